use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct SendEmail;

#[derive(Serialize, Deserialize)]
struct SendEmailV2;

#[kosh_jobs::job]
async fn send_email(_: SendEmail) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

// Same stored name as the job above: the worker could not tell them apart.
#[kosh_jobs::job(name = "send_email")]
async fn send_email_v2(_: SendEmailV2) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
