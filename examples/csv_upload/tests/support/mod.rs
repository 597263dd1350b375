//! Helpers for the end-to-end tests: an app (web and, optionally, an in-process worker) on
//! files in a temporary folder, an HTTP client, and waits on conditions with deadlines.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use csv_upload::config::Config;
use csv_upload::run::Services;
use kosh_jobs::worker::WorkerHandle;
use kosh_jobs::CancellationToken;
use serde_json::Value;

pub mod flow;
pub mod postgres;
pub mod redis;
pub mod users;

/// Polls `check` until it gives `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A configuration on files under `dir`.
pub fn config(dir: &std::path::Path, jobs_url: &str) -> Config {
    Config {
        database_url: format!("sqlite://{}", dir.join("app.db").display()),
        jobs_url: jobs_url.to_owned(),
        jobs_prefix: None,
        bind: "127.0.0.1:0".parse().unwrap(),
        max_upload_bytes: 64 * 1024,
        upload_dir: dir.join("uploads"),
        batch_rows: 4,
        row_delay: Duration::ZERO,
        lease: Duration::from_secs(5),
        date_order: csv_upload::parse::DateOrder::DayFirst,
        metrics: true,
        metrics_sample: Duration::from_secs(1),
        admin_password: Some("test-admin".into()),
    }
}

/// A running app.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub services: Services,
    pub http: reqwest::Client,
    worker: Option<WorkerHandle>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    /// Web app and an in-process worker; `jobs_url` of `None` means a SQLite file in the
    /// temporary folder.
    pub async fn start(jobs_url: Option<&str>, with_worker: bool) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let url = jobs_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("jobs.db").display()));
        Self::start_with(dir, config_for(&url), with_worker).await
    }

    /// Starts on a configuration made from the folder.
    pub async fn start_with(
        dir: tempfile::TempDir,
        make: impl FnOnce(&std::path::Path) -> Config,
        with_worker: bool,
    ) -> TestApp {
        let cfg = make(dir.path());
        let services = Services::open(cfg).await.unwrap();
        let stop = CancellationToken::new();
        let (addr, server) = services
            .bind_web(None, stop.clone().cancelled_owned())
            .await
            .unwrap();
        let server = tokio::spawn(server);
        let worker = if with_worker {
            Some(services.worker(2).await.unwrap().spawn())
        } else {
            None
        };
        TestApp {
            dir,
            base: format!("http://{addr}"),
            services,
            http: reqwest::Client::new(),
            worker,
            stop,
            server,
        }
    }

    /// Starts the in-process worker of an app started without one.
    pub async fn start_worker(&mut self) {
        self.start_worker_with(2).await;
    }

    /// Starts the in-process worker of an app started without one, running `concurrency`
    /// imports at once.
    pub async fn start_worker_with(&mut self, concurrency: usize) {
        assert!(self.worker.is_none(), "the worker is running already");
        let worker = self.services.worker(concurrency).await.unwrap();
        self.worker = Some(worker.spawn());
    }

    /// Sends a request with `method` and an optional JSON body; the status and the JSON
    /// answer (`null` for none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, self.url(path));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, v)
    }

    /// The stored files in the upload folder.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.upload_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn upload_dir(&self) -> PathBuf {
        self.services.config.upload_dir.clone()
    }

    /// Uploads `content` as a file named `name`; the status and the JSON answer.
    pub async fn upload(&self, name: &str, content: Vec<u8>) -> (u16, Value) {
        self.upload_as(name, content, None, None).await
    }

    /// Uploads `content` as a file named `name` with a `user` form field (sent before the
    /// file, as the page sends it) and an `X-User` header, each if given.
    pub async fn upload_as(
        &self,
        name: &str,
        content: Vec<u8>,
        form_user: Option<&str>,
        header_user: Option<&str>,
    ) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(content)
            .file_name(name.to_owned())
            .mime_str("text/csv")
            .unwrap();
        let mut form = reqwest::multipart::Form::new();
        if let Some(user) = form_user {
            form = form.text("user", user.to_owned());
        }
        let form = form.part("file", part);
        let mut request = self.http.post(self.url("/api/imports")).multipart(form);
        if let Some(user) = header_user {
            request = request.header("x-user", user);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(ct.as_deref(), Some("application/json"), "answers are JSON");
        (status, r.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn post(&self, path: &str) -> u16 {
        let r = self.http.post(self.url(path)).send().await.unwrap();
        r.status().as_u16()
    }

    /// Waits until import `id` is completed or failed; its JSON.
    pub async fn wait_final(&self, id: i64, timeout: Duration) -> Value {
        wait_for(&format!("import {id} to finish"), timeout, || async {
            let (status, v) = self.get(&format!("/api/imports/{id}")).await;
            assert_eq!(status, 200, "{v}");
            // The handler writes the import's outcome and then returns; the worker stores the
            // job's outcome only after that. Wait for both, so the job's state is settled too.
            let import_final = matches!(v["state"].as_str(), Some("completed" | "failed"));
            let job_settled = !matches!(v["job"]["state"].as_str(), Some("running" | "ready"));
            (import_final && job_settled).then_some(v)
        })
        .await
    }

    /// Stops the worker and the web server.
    pub async fn stop(self) {
        if let Some(w) = self.worker {
            w.shutdown().await.unwrap();
        }
        self.stop.cancel();
        self.server.await.unwrap().unwrap();
    }
}

pub fn config_for(url: &str) -> impl FnOnce(&std::path::Path) -> Config + '_ {
    move |dir| config(dir, url)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// How long a browser test waits for the page to show something.
pub const PAGE_PATIENCE: Duration = Duration::from_secs(30);

/// Waits until the text of the element at `css` satisfies `ok` (at most [`PAGE_PATIENCE`]);
/// its text.
pub async fn wait_text(
    b: &fantoccini::Client,
    css: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + PAGE_PATIENCE;
    loop {
        let text = match b.find(fantoccini::Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: `{css}` still shows `{text}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
