//! `kosh-jobs dashboard` as a real process on a SQLite file: the URL it prints, basic auth,
//! read-only mode. (The pages themselves are tested in kosh-jobs-web.)

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::seed;

/// The dashboard process, killed when dropped.
struct Dashboard {
    child: Child,
    addr: String,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, url: &str, password: Option<&str>, extra: &[&str]) -> Dashboard {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kosh-jobs"));
    c.current_dir(dir)
        .env_remove("KOSH_JOBS_DASHBOARD_PASSWORD")
        .args(["--url", url, "dashboard", "--bind", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = password {
        c.env("KOSH_JOBS_DASHBOARD_PASSWORD", p);
    }
    let mut child = c.spawn().expect("start kosh-jobs dashboard");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // The first line is the URL: the process prints it once it listens.
    let first = lines
        .next()
        .expect("the dashboard printed nothing")
        .expect("read stdout");
    let second = lines.next().expect("a second line").expect("read stdout");
    assert!(
        second.contains("kosh-jobs dashboard for the SQLite file"),
        "second line: {second}"
    );
    if password.is_some() {
        assert!(second.contains("basic auth on"), "{second}");
        assert!(
            !second.contains("s3cret"),
            "the password is never printed: {second}"
        );
    } else {
        assert!(second.contains("no password"), "{second}");
    }
    let addr = first
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or_else(|| panic!("first line is not a URL: {first}"))
        .to_owned();
    Dashboard { child, addr }
}

/// One HTTP/1.1 request; returns the status code, the head and the body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = if method == "POST" { "{}" } else { "" };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, head.to_owned(), body.to_owned())
}

// "admin:s3cret"
const GOOD: &str = "Basic YWRtaW46czNjcmV0";
// "admin:wrong"
const BAD: &str = "Basic YWRtaW46d3Jvbmc=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_serves_with_basic_auth_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let backend = kosh_jobs::connect(&url).await.unwrap();
    seed(&backend).await;
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        // With a password: nothing without it, everything with it.
        let d = start(&path, &url, Some("s3cret"), &[]);
        let (code, head, _) = request(&d.addr, "GET", "/", &[]);
        assert_eq!(code, 401, "no credentials");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "a basic-auth challenge: {head}"
        );
        let (code, _, _) = request(&d.addr, "GET", "/api/overview", &[("Authorization", BAD)]);
        assert_eq!(code, 401, "a wrong password");
        // The scheme's case does not matter (RFC 9110): a client writing `basic` gets in.
        let lower = GOOD.replacen("Basic", "basic", 1);
        let (code, _, _) = request(
            &d.addr,
            "GET",
            "/api/overview",
            &[("Authorization", &lower)],
        );
        assert_eq!(code, 200, "the scheme in lower case");
        let (code, _, body) = request(&d.addr, "GET", "/api/overview", &[("Authorization", GOOD)]);
        assert_eq!(code, 200, "the right password: {body}");
        assert!(
            body.contains("csv-uploads"),
            "the overview names the queue: {body}"
        );
        assert!(!body.contains("s3cret"));
        let (code, _, body) = request(
            &d.addr,
            "POST",
            "/api/queues/csv-uploads/pause",
            &[("Authorization", GOOD), ("Sec-Fetch-Site", "same-origin")],
        );
        assert_eq!(code, 200, "pause with the password: {body}");
        drop(d);

        // Read-only and no password: pages open, actions refused.
        let d = start(&path, &url, None, &["--read-only"]);
        let (code, _, body) = request(&d.addr, "GET", "/", &[]);
        assert_eq!(code, 200, "the page without a password: {body}");
        let (code, _, body) = request(
            &d.addr,
            "POST",
            "/api/queues/csv-uploads/resume",
            &[("Sec-Fetch-Site", "same-origin")],
        );
        assert_eq!(code, 403, "read-only refuses actions: {body}");
        let (_, _, body) = request(&d.addr, "GET", "/api/overview", &[]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let q = v["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["queue"] == "csv-uploads"))
            .unwrap_or_else(|| panic!("no csv-uploads in {body}"));
        assert_eq!(
            q["paused"], true,
            "still paused: the resume was refused: {body}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn a_taken_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let url = "memory:";
    let out = Command::new(env!("CARGO_BIN_EXE_kosh-jobs"))
        .current_dir(dir.path())
        .args(["--url", url, "dashboard", "--bind", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}
