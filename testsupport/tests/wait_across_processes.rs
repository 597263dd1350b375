//! `wait` in a process that neither enqueued the job nor runs it: this test enqueues, one
//! child process runs the worker, another waits and prints the typed result, on SQLite (a file
//! shared by the three processes) and on Redis.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use kosh_jobs::Client;
use kosh_jobs_testsupport::jobs::Double;
use kosh_jobs_testsupport::redis_server::RedisServer;

const CHILD: &str = env!("CARGO_BIN_EXE_kosh-jobs-test-child");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Proc, BufReader<ChildStdout>) {
    let mut child = Command::new(CHILD)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child process");
    let out = BufReader::new(child.stdout.take().expect("piped"));
    (Proc(child), out)
}

fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).expect("read the child's output");
    l.trim().to_owned()
}

async fn across_processes(url: &str) {
    let jobs = Client::new(kosh_jobs::connect(url).await.unwrap());
    let ok = jobs.enqueue(Double { n: 21 }).await.unwrap();
    let bad = jobs.enqueue(Double { n: -1 }).await.unwrap();

    // The waiters start before any worker exists: they must wait, not find nothing.
    let (_w1, mut waits_ok) = spawn(&["wait", url, &ok.id().to_string()]);
    let (_w2, mut waits_bad) = spawn(&["wait", url, &bad.id().to_string()]);
    let (_worker, mut worker_out) = spawn(&["worker", url]);
    assert_eq!(line(&mut worker_out), "ready");

    assert_eq!(line(&mut waits_ok), "result: 42", "{url}");
    let failed = line(&mut waits_bad);
    assert!(
        failed.starts_with("error: job") && failed.contains("-1 is negative"),
        "{url}: {failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    across_processes(&format!(
        "sqlite://{}",
        dir.path().join("jobs.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let server = RedisServer::start().expect("a private redis-server (see scripts/test.sh)");
    across_processes(&format!("{}?prefix=across", server.url())).await;
}
