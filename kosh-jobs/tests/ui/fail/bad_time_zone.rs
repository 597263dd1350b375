use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
struct Nightly;

#[kosh_jobs::job(cron = "0 3 * * *", tz = "Europe/Berln")]
async fn nightly(_: Nightly) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize, Default)]
struct Hourly;

#[kosh_jobs::job(tz = "Asia/Kolkata")]
async fn hourly(_: Hourly) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
