use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
struct Nightly;

#[kosh_jobs::job(queue = "maintenance", cron = "0 25 * * *")]
async fn nightly(_: Nightly) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
