// `async fn(payload) -> Result<(), E>`: registers with a worker of any state.
use kosh_jobs::{Handler, Job};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
}

#[derive(Debug)]
struct SmtpError;
impl std::fmt::Display for SmtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("smtp refused")
    }
}
impl std::error::Error for SmtpError {}

#[kosh_jobs::job(queue = "mail")]
async fn send_email(job: SendEmail) -> Result<(), SmtpError> {
    if job.to.is_empty() {
        return Err(SmtpError);
    }
    Ok(())
}

fn handles<J: Handler<S, Output = ()>, S>() {}

fn main() {
    handles::<SendEmail, ()>();
    handles::<SendEmail, std::sync::Arc<String>>();
    assert_eq!(SendEmail::NAME, "send_email");
    assert_eq!(SendEmail::QUEUE, "mail");
    // The function is still there, as written.
    let _future = send_email(SendEmail { to: "a@b.c".into() });
}
