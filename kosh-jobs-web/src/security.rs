//! Cross-site request refusal and the security headers of every answer.

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::router::Shared;

/// What the pages may load: only this router's own script, style and images; no inline
/// script, no framing, no form posts elsewhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Refuses a state-changing request (any method but GET and HEAD) that a browser sent from
/// another site: `Sec-Fetch-Site` must be `same-origin` or `none` when present, and `Origin`,
/// when present, must be the request's own host (or an allowed origin).
///
/// A request with neither header does not come from a modern browser's page (curl, a
/// script): it is let through, since it cannot ride on a user's session cookie unnoticed.
pub(crate) async fn refuse_cross_site(
    State(shared): State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if let Err(why) = check_same_origin(req.headers(), req.uri(), &shared.options.allowed_origins) {
        tracing::info!(method = %req.method(), uri = %req.uri(), why, "kosh-jobs dashboard: cross-site request refused");
        return ApiError::forbidden(format!("cross-site request refused: {why}")).into_response();
    }
    next.run(req).await
}

fn check_same_origin(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    allowed: &[String],
) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err("Sec-Fetch-Site is not same-origin");
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| "the Origin header is not text")?
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if allowed.contains(&origin) {
        return Ok(());
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err("the Origin is opaque");
    };
    let origin_host = without_default_port(scheme, authority);
    let hosts = [
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
        headers
            .get("x-forwarded-host")
            .and_then(|h| h.to_str().ok()),
        uri.authority().map(|a| a.as_str()),
    ];
    let same = hosts.into_iter().flatten().any(|h| {
        // X-Forwarded-Host may list the hosts of a chain of proxies: the first is the client's.
        let h = h.split(',').next().unwrap_or_default().trim();
        without_default_port(scheme, &h.to_ascii_lowercase()) == origin_host
    });
    if same {
        Ok(())
    } else {
        Err("the Origin is not this host")
    }
}

/// Asks for the user name and password of [`Options::basic_auth`](crate::Options::basic_auth)
/// when set: a request without the right `Authorization` gets 401 with a challenge.
pub(crate) async fn basic_auth(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = shared.options.basic_auth.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|g| basic_credentials(g.as_bytes()));
    let wanted = basic_credentials(expected.as_bytes());
    let ok = matches!((given, wanted), (Some(g), Some(w)) if !w.is_empty() && same_bytes(g, w));
    if ok {
        return next.run(req).await;
    }
    let mut res = (
        axum::http::StatusCode::UNAUTHORIZED,
        "a user name and password are needed\n",
    )
        .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"kosh-jobs\", charset=\"UTF-8\""),
    );
    res
}

/// The credentials of a `Basic` authorization value: the scheme is matched without regard to
/// case and may be followed by several spaces (RFC 9110, 11.1 and 11.4); `None` for another
/// scheme.
fn basic_credentials(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"basic")
        .then(|| rest.trim_ascii())
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn without_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return authority,
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// Adds the security headers to every answer; API answers are never cached.
pub(crate) async fn headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if api || !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_scheme_is_matched_without_regard_to_case() {
        assert_eq!(basic_credentials(b"Basic YTpi"), Some(&b"YTpi"[..]));
        assert_eq!(basic_credentials(b"basic   YTpi "), Some(&b"YTpi"[..]));
        assert_eq!(basic_credentials(b"BASIC YTpi"), Some(&b"YTpi"[..]));
        assert_eq!(basic_credentials(b"Bearer YTpi"), None);
        assert_eq!(basic_credentials(b"BasicYTpi"), None);
        assert_eq!(basic_credentials(b"Basic"), None);
    }

    #[test]
    fn same_bytes_compares_whole_values() {
        assert!(same_bytes(b"Basic YTpi", b"Basic YTpi"));
        assert!(!same_bytes(b"Basic YTpi", b"Basic YTpj"));
        assert!(!same_bytes(b"Basic YTp", b"Basic YTpi"));
        assert!(!same_bytes(b"", b"Basic YTpi"));
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn origins() {
        let uri = axum::http::Uri::from_static("/api/bulk");
        let ok = |p: &[(&'static str, &'static str)]| check_same_origin(&h(p), &uri, &[]).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("sec-fetch-site", "none")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(ok(&[
            ("origin", "http://a.test:8080"),
            ("host", "a.test:8080")
        ]));
        assert!(ok(&[("origin", "https://A.test"), ("host", "a.test:443")]));
        assert!(!ok(&[("origin", "http://evil.test"), ("host", "a.test")]));
        assert!(!ok(&[("origin", "null"), ("host", "a.test")]));
        assert!(!ok(&[("origin", "http://a.test:81"), ("host", "a.test")]));
        assert!(ok(&[
            ("origin", "https://admin.test"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "admin.test")
        ]));
        let allowed = vec!["https://admin.test".to_owned()];
        assert!(check_same_origin(
            &h(&[("origin", "https://admin.test/"), ("host", "10.0.0.1")]),
            &uri,
            &allowed
        )
        .is_ok());
    }
}
