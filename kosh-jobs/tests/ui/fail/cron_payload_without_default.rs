use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Report {
    user: u64,
}

#[kosh_jobs::job(cron = "@daily")]
async fn report(_: Report) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
