//! The csv_upload app as it runs in production: `csv_upload serve` and `csv_upload worker`,
//! two processes on one job store, and a page open on it that behaves as `index.html` does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One process of the app, killed when dropped.
pub(crate) struct AppProcess(Child);

impl AppProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Stops it as systemd would (SIGTERM), waiting for the graceful shutdown.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.0.wait()?;
        if !status.success() {
            bail!("csv_upload {pid} exited with {status}");
        }
        Ok(())
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What both processes are configured with: the app's SQLite file and uploads in `dir`, the
/// job store at `jobs_url`, everything else the app's defaults.
pub(crate) struct AppConfig {
    pub(crate) binary: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) jobs_url: String,
    pub(crate) bind: String,
    /// `METRICS_SAMPLE_SECS` of the worker.
    pub(crate) sample_secs: u64,
}

impl AppConfig {
    fn command(&self, role: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg(role)
            .current_dir(&self.dir)
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("REDIS_URL")
            .env_remove("JOBS_PREFIX")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", self.dir.join("app.db").display()),
            )
            .env("JOBS_URL", &self.jobs_url)
            .env("UPLOAD_DIR", self.dir.join("uploads"))
            .env("BIND", &self.bind)
            .env("METRICS_SAMPLE_SECS", self.sample_secs.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    /// Starts `csv_upload serve` and waits until it answers.
    pub(crate) async fn serve(&self) -> anyhow::Result<AppProcess> {
        let child = self
            .command("serve")
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let process = AppProcess(child);
        let url = format!("http://{}/", self.bind);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return Ok(process);
                }
            }
            if Instant::now() > deadline {
                bail!("csv_upload serve did not answer at {url} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `csv_upload worker` (its start-up requests are seen by the monitor).
    pub(crate) fn worker(&self) -> anyhow::Result<AppProcess> {
        let child = self
            .command("worker")
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(AppProcess(child))
    }
}

/// The csv_upload binary: `--app PATH`, else the one built beside this runner.
pub(crate) fn find_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("csv_upload"))
            .context("the runner's folder")?,
    };
    if !Path::new(&path).is_file() {
        bail!(
            "no csv_upload binary at {}: build it with the same profile first \
             (`cargo build --release -p csv_upload`), or pass --app PATH",
            path.display()
        );
    }
    Ok(path)
}

/// A job event the page received.
#[derive(Clone, Debug)]
pub(crate) struct PageEvent {
    pub(crate) job_id: String,
    pub(crate) kind: String,
}

/// A browser tab on the app, doing what `index.html` does: it listens to `GET /api/events`,
/// and redraws (`GET /api/imports` and `GET /api/notifications`) 100 ms after an event,
/// one redraw for a burst; and right after its own upload.
pub(crate) struct Page {
    http: reqwest::Client,
    base: String,
    redraw_now: mpsc::UnboundedSender<()>,
    busy: watch::Receiver<bool>,
    pub(crate) events: mpsc::UnboundedReceiver<PageEvent>,
}

impl Page {
    /// Opens the page: the event stream, then a first redraw (as on `open`).
    pub(crate) async fn open(bind: &str) -> anyhow::Result<Page> {
        let http = reqwest::Client::new();
        let base = format!("http://{bind}");
        let stream = http
            .get(format!("{base}/api/events"))
            .send()
            .await?
            .error_for_status()
            .context("GET /api/events")?;
        let (event_tx, events) = mpsc::unbounded_channel();
        let (redraw_now, redraw_rx) = mpsc::unbounded_channel();
        let (busy_tx, busy) = watch::channel(false);
        let tab = Tab {
            http: http.clone(),
            base: base.clone(),
            busy: busy_tx,
        };
        tokio::spawn(tab.run(stream, event_tx, redraw_rx));
        let page = Page {
            http,
            base,
            redraw_now,
            busy,
            events,
        };
        page.redraw();
        Ok(page)
    }

    /// Redraws at once.
    pub(crate) fn redraw(&self) {
        let _ = self.redraw_now.send(());
    }

    /// Waits until no redraw is due or running.
    pub(crate) async fn idle(&mut self) -> anyhow::Result<()> {
        self.busy
            .wait_for(|b| !*b)
            .await
            .context("the page's task ended")?;
        Ok(())
    }

    /// Uploads a statement from the form (user `demo`) and redraws; returns the job id.
    pub(crate) async fn upload(&self, name: &str, csv: Vec<u8>) -> anyhow::Result<String> {
        let part = reqwest::multipart::Part::bytes(csv)
            .file_name(name.to_owned())
            .mime_str("text/csv")?;
        let r = self
            .http
            .post(format!("{}/api/imports", self.base))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status.as_u16() != 202 {
            bail!("upload refused: {status} {v}");
        }
        self.redraw();
        v["job_id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no job_id in {v}"))
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

struct Tab {
    http: reqwest::Client,
    base: String,
    busy: watch::Sender<bool>,
}

impl Tab {
    async fn run(
        self,
        mut stream: reqwest::Response,
        events: mpsc::UnboundedSender<PageEvent>,
        mut redraw_now: mpsc::UnboundedReceiver<()>,
    ) {
        let mut buf = String::new();
        let mut due: Option<Instant> = None;
        loop {
            let at = due;
            let timer = async move {
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                chunk = stream.chunk() => {
                    let Ok(Some(chunk)) = chunk else { return };
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find("\n\n") {
                        let frame: String = buf.drain(..end + 2).collect();
                        let Some(event) = parse_frame(&frame) else { continue };
                        let _ = events.send(event);
                        // Many events in a burst make one redraw.
                        if due.is_none() {
                            due = Some(Instant::now() + Duration::from_millis(100));
                            self.busy.send_replace(true);
                        }
                    }
                }
                now = redraw_now.recv() => {
                    if now.is_none() { return }
                    self.busy.send_replace(true);
                    self.redraw().await;
                    self.busy.send_replace(due.is_some());
                }
                _ = timer => {
                    due = None;
                    self.redraw().await;
                    self.busy.send_replace(false);
                }
            }
        }
    }

    async fn redraw(&self) {
        let get = |path: &'static str| {
            let url = format!("{}{path}", self.base);
            let http = self.http.clone();
            async move {
                http.get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
            }
        };
        let (a, b) = tokio::join!(get("/api/imports"), get("/api/notifications"));
        if let (Ok(a), Ok(b)) = (a, b) {
            let _ = tokio::join!(a.bytes(), b.bytes());
        }
    }
}

/// A `job` frame (`event: job`, `data: {"job_id", "kind", …}`); `None` for comments and
/// `missed` (which the page answers with a redraw too, as a job event).
fn parse_frame(frame: &str) -> Option<PageEvent> {
    let mut kind = None;
    let mut data = None;
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(v.trim());
        }
    }
    match kind? {
        "job" => {
            let v: Value = serde_json::from_str(data?).ok()?;
            Some(PageEvent {
                job_id: v["job_id"].as_str()?.to_owned(),
                kind: v["kind"].as_str()?.to_owned(),
            })
        }
        "missed" => Some(PageEvent {
            job_id: String::new(),
            kind: "missed".into(),
        }),
        _ => None,
    }
}
