//! [`Options`]: read-only mode, the authorization hook, the title, the backend's description.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use kosh_jobs_core::AdminAction;
use serde::Serialize;

use crate::redact::redact_url;

/// Something the dashboard can change, as its authorization hook sees it.
///
/// Every state-changing request names one; reading pages and the API needs none.
///
/// ```
/// use kosh_jobs_web::Action;
/// assert_eq!(Action::Retry.as_str(), "retry");
/// assert!(Action::Delete.is_destructive());
/// assert_eq!(Action::PauseSchedule.as_str(), "pause_schedule");
/// assert_eq!(Action::ALL.len(), 12);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Retry failed or cancelled jobs.
    Retry,
    /// Cancel scheduled, ready or running jobs.
    Cancel,
    /// Delete finished jobs.
    Delete,
    /// Run scheduled jobs now.
    Promote,
    /// Pause a queue.
    Pause,
    /// Resume a paused queue.
    Resume,
    /// Delete a queue's finished jobs older than an age.
    Purge,
    /// Enqueue a job by hand.
    Enqueue,
    /// Pause a schedule (periodic job): it fires no tick until resumed.
    ///
    /// Schedules have their own actions, not the queue's [`Pause`](Action::Pause) or the
    /// jobs' [`Delete`](Action::Delete), so a hook that lets support staff pause a queue or
    /// delete finished jobs does not also let them stop or remove a periodic job.
    PauseSchedule,
    /// Resume a paused schedule from its next tick after now.
    ResumeSchedule,
    /// Enqueue a schedule's job now, outside its ticks.
    TriggerSchedule,
    /// Remove a schedule for good (the jobs it enqueued stay).
    RemoveSchedule,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 12] = [
        Action::Retry,
        Action::Cancel,
        Action::Delete,
        Action::Promote,
        Action::Pause,
        Action::Resume,
        Action::Purge,
        Action::Enqueue,
        Action::PauseSchedule,
        Action::ResumeSchedule,
        Action::TriggerSchedule,
        Action::RemoveSchedule,
    ];

    /// The lowercase name, as the API and the authorization hook's logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Delete => "delete",
            Action::Promote => "promote",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Purge => "purge",
            Action::Enqueue => "enqueue",
            Action::PauseSchedule => "pause_schedule",
            Action::ResumeSchedule => "resume_schedule",
            Action::TriggerSchedule => "trigger_schedule",
            Action::RemoveSchedule => "remove_schedule",
        }
    }

    /// Whether the action removes something for good (delete, purge, remove_schedule).
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Action::Delete | Action::Purge | Action::RemoveSchedule
        )
    }

    /// The action on jobs, for the backend's admin contract.
    pub(crate) fn admin(self) -> Option<AdminAction> {
        match self {
            Action::Retry => Some(AdminAction::Retry),
            Action::Cancel => Some(AdminAction::Cancel),
            Action::Delete => Some(AdminAction::Delete),
            Action::Promote => Some(AdminAction::Promote),
            _ => None,
        }
    }

    /// The action on jobs named `s` (retry, cancel, delete, promote).
    pub(crate) fn job_action(s: &str) -> Option<Action> {
        [
            Action::Retry,
            Action::Cancel,
            Action::Delete,
            Action::Promote,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

impl From<AdminAction> for Action {
    fn from(a: AdminAction) -> Self {
        match a {
            AdminAction::Retry => Action::Retry,
            AdminAction::Cancel => Action::Cancel,
            AdminAction::Delete => Action::Delete,
            AdminAction::Promote => Action::Promote,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authorization hook: whether this request may do this action.
type Authorize = Arc<dyn Fn(&Parts, Action) -> bool + Send + Sync + 'static>;

/// How the dashboard behaves: built with [`Options::new`] and its builder methods, passed to
/// [`router`](crate::router).
///
/// By default every action is allowed to whoever reaches the router: nest it behind your
/// application's authentication, and narrow it with [`Options::read_only`] or
/// [`Options::authorize`].
///
/// ```
/// use kosh_jobs_web::{Action, Options};
///
/// // Support staff (no `x-role: engineer` header set by the app's auth layer) may only retry.
/// let options = Options::new()
///     .title("Acme jobs")
///     .backend_url("redis://:s3cret@cache.internal:6379/0")
///     .authorize(|parts, action| {
///         let engineer = parts.headers.get("x-role").is_some_and(|r| r == "engineer");
///         engineer || action == Action::Retry
///     });
/// assert_eq!(options.backend_description(), Some("redis://cache.internal:6379/0"));
/// assert!(!options.is_read_only());
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) title: String,
    pub(crate) read_only: bool,
    pub(crate) authorize: Option<Authorize>,
    pub(crate) backend: Option<String>,
    pub(crate) poll_interval: Duration,
    pub(crate) allowed_origins: Vec<String>,
    /// `Basic base64(user:password)`: the `Authorization` value every request must carry.
    pub(crate) basic_auth: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            title: "kosh-jobs".into(),
            read_only: false,
            authorize: None,
            backend: None,
            poll_interval: Duration::from_secs(5),
            allowed_origins: Vec::new(),
            basic_auth: None,
        }
    }
}

impl Options {
    /// Every action allowed, title "kosh-jobs", polling every 5 seconds.
    pub fn new() -> Self {
        Self::default()
    }

    /// The title of the pages (shown as text, never as markup).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Refuses every action with `403 Forbidden` and hides the buttons: a dashboard to look,
    /// not to touch.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Called for each action with the request's head (method, URI, headers, extensions set
    /// by your auth layer): `false` refuses it with `403 Forbidden`. Also called when the
    /// pages load, to hide the buttons of refused actions. Keep it cheap and free of side
    /// effects.
    pub fn authorize(
        mut self,
        hook: impl Fn(&Parts, Action) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// Shows which store the dashboard looks at, from its URL with the password and the query
    /// string removed (see [`redact_url`]): the password never reaches a page.
    pub fn backend_url(mut self, url: &str) -> Self {
        self.backend = Some(redact_url(url));
        self
    }

    /// How often open pages ask for fresh data; clamped to 1 second .. 10 minutes.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.clamp(Duration::from_secs(1), Duration::from_secs(600));
        self
    }

    /// Asks every request for this user name and password (HTTP basic auth; use it over
    /// HTTPS beyond one machine). For an app with its own login, leave it off and nest the
    /// router behind that instead.
    ///
    /// A user name holding `:` cannot be sent by basic auth: such a name locks every request
    /// out rather than letting any in.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        self.basic_auth = Some(if user.contains(':') {
            String::new()
        } else {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        self
    }

    /// Whether requests must carry a user name and password.
    pub fn has_basic_auth(&self) -> bool {
        self.basic_auth.is_some()
    }

    /// Also accepts state-changing requests whose `Origin` is this one (e.g.
    /// `https://admin.example.com`), for a reverse proxy that rewrites the `Host` header
    /// without setting `X-Forwarded-Host`. The request's own host is always accepted.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into().trim_end_matches('/').to_ascii_lowercase();
        if !self.allowed_origins.contains(&origin) {
            self.allowed_origins.push(origin);
        }
        self
    }

    /// Whether every action is refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The redacted description of the store, if one was given.
    pub fn backend_description(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// Whether the request may do the action: not read-only, and the hook (if any) agrees.
    pub fn allows(&self, parts: &Parts, action: Action) -> bool {
        !self.read_only && self.authorize.as_ref().is_none_or(|f| f(parts, action))
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("title", &self.title)
            .field("read_only", &self.read_only)
            .field("authorize", &self.authorize.as_ref().map(|_| "<hook>"))
            .field("backend", &self.backend)
            .field("poll_interval", &self.poll_interval)
            .field("allowed_origins", &self.allowed_origins)
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, HeaderValue, Request, StatusCode};
    use axum::Router;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use kosh_jobs_core::memory::MemoryBackend;
    use tower::ServiceExt as _;

    use super::*;

    fn app(options: Options) -> Router {
        crate::router(MemoryBackend::new(), options)
    }

    /// `Basic base64(text)`.
    fn basic(text: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(text)).into_bytes()
    }

    /// `GET /api/meta` with this `Authorization` value (none for `None`): the status, and
    /// whether the answer asks for a password.
    async fn get(app: &Router, authorization: Option<&[u8]>) -> (StatusCode, bool) {
        let mut req = Request::get("/api/meta");
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, HeaderValue::from_bytes(a).unwrap());
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let challenge = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .is_some_and(|v| v.as_bytes().starts_with(b"Basic realm="));
        (res.status(), challenge)
    }

    const REFUSED: (StatusCode, bool) = (StatusCode::UNAUTHORIZED, true);

    #[tokio::test]
    async fn basic_auth_lets_in_the_right_user_and_password_only() {
        let options = Options::new().basic_auth("admin", "s3cret pass:word");
        assert!(options.has_basic_auth());
        let app = app(options);
        let right = basic("admin:s3cret pass:word");
        assert_eq!(get(&app, Some(&right)).await, (StatusCode::OK, false));
        for (what, given) in [
            ("wrong password", basic("admin:s3cret pass:wordx")),
            ("empty password", basic("admin:")),
            ("wrong user", basic("Admin:s3cret pass:word")),
            ("no colon", basic("admins3cret pass:word")),
        ] {
            assert_eq!(get(&app, Some(&given)).await, REFUSED, "{what}");
        }
    }

    #[tokio::test]
    async fn basic_auth_refuses_a_missing_or_malformed_header() {
        let app = app(Options::new().basic_auth("admin", "s3cret"));
        assert_eq!(get(&app, None).await, REFUSED, "no header");
        let encoded = STANDARD.encode("admin:s3cret");
        for (what, given) in [
            (
                "the credentials not encoded",
                b"Basic admin:s3cret".to_vec(),
            ),
            ("not base64", b"Basic !!!not-base64!!!".to_vec()),
            ("another scheme", format!("Bearer {encoded}").into_bytes()),
            ("no scheme", encoded.clone().into_bytes()),
            ("trailing text", format!("Basic {encoded}x").into_bytes()),
            ("empty", Vec::new()),
            ("not text", b"Basic \xff\xfe".to_vec()),
        ] {
            assert_eq!(get(&app, Some(&given)).await, REFUSED, "{what}");
        }
    }

    /// RFC 9110 (11.1, 11.4): the scheme is case-insensitive and spaces may be several.
    #[tokio::test]
    async fn basic_auth_takes_the_scheme_in_any_case_and_several_spaces() {
        let app = app(Options::new().basic_auth("admin", "s3cret"));
        let encoded = STANDARD.encode("admin:s3cret");
        for given in [
            format!("basic {encoded}"),
            format!("BASIC {encoded}"),
            format!("Basic  {encoded}"),
        ] {
            assert_eq!(
                get(&app, Some(given.as_bytes())).await,
                (StatusCode::OK, false),
                "{given}"
            );
        }
    }

    #[tokio::test]
    async fn basic_auth_with_a_colon_in_the_user_locks_everyone_out() {
        let options = Options::new().basic_auth("ad:min", "s3cret");
        assert!(options.has_basic_auth());
        let app = app(options);
        // Not even what a client would send for that user and password gets in.
        for given in [basic("ad:min:s3cret"), basic("ad:min"), basic("ad:s3cret")] {
            assert_eq!(get(&app, Some(&given)).await, REFUSED);
        }
        assert_eq!(get(&app, None).await, REFUSED);
        assert_eq!(get(&app, Some(b"")).await, REFUSED, "an empty header");
    }

    #[tokio::test]
    async fn without_basic_auth_every_request_gets_in() {
        let options = Options::new();
        assert!(!options.has_basic_auth());
        let app = app(options);
        assert_eq!(get(&app, None).await, (StatusCode::OK, false));
        assert_eq!(
            get(&app, Some(&basic("anyone:at-all"))).await,
            (StatusCode::OK, false)
        );
    }
}
