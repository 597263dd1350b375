// Every key at once, each backoff form, negative priority, both unique forms.
use kosh_jobs::{Job, JobError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order_id: i64,
}

#[kosh_jobs::job(
    name = "send_receipt.v1",
    queue = "mail:receipts",
    max_attempts = 10,
    backoff = linear(30s, max = 10m, jitter = 0.1),
    timeout = 1500ms,
    priority = -5,
    unique = "receipt-{order_id}",
    crate = "::kosh_jobs",
)]
async fn send_receipt(job: SendReceipt) -> Result<(), JobError> {
    let _ = job.order_id;
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct A;
#[kosh_jobs::job(backoff = none, max_attempts = 1, priority = 2147483647)]
async fn a(_: A) -> Result<(), JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct B {
    key: u32,
}
#[kosh_jobs::job(backoff = fixed(1h, jitter = 1), unique = key, priority = -2147483648)]
async fn b(_: B) -> Result<(), JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct C;
#[kosh_jobs::job(backoff = exponential(500ms, max = 30d, jitter = 0.25,), timeout = 2d,)]
async fn c(_: C) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    assert_eq!(SendReceipt::NAME, "send_receipt.v1");
    assert_eq!(
        SendReceipt { order_id: 3 }.unique_key().as_deref(),
        Some("receipt-3")
    );
    assert_eq!(B { key: 4 }.unique_key().as_deref(), Some("b:4"));
    assert_eq!(A::options().priority, i32::MAX);
    assert_eq!(B::options().priority, i32::MIN);
    assert_eq!(
        C::options().timeout,
        Some(std::time::Duration::from_secs(2 * 86_400))
    );
}
