// Declared schedules: a cron expression, its time zone, seconds, aliases, L/W/#.
use kosh_jobs::{Job, JobError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
struct Nightly;

#[kosh_jobs::job(queue = "maintenance", cron = "0 3 * * *", tz = "Asia/Kolkata")]
async fn nightly(_: Nightly) -> Result<(), JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize, Default)]
struct Often {
    batch: u32,
}

#[kosh_jobs::job(cron = "*/10 * * * * *")]
async fn often(_: Often) -> Result<(), JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize, Default)]
struct Monthly;

#[kosh_jobs::job(cron = "0 9 LW * *", tz = "UTC", max_attempts = 5)]
async fn monthly(_: Monthly) -> Result<(), JobError> {
    Ok(())
}

#[derive(Serialize, Deserialize, Default)]
struct Weekly;

#[kosh_jobs::job(cron = "@weekly")]
async fn weekly(_: Weekly) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    let n = Nightly::declared_schedule().expect("declared");
    assert_eq!((n.cron, n.tz), ("0 3 * * *", "Asia/Kolkata"));
    assert_eq!(Often::declared_schedule().expect("declared").tz, "UTC");
    assert!(Monthly::declared_schedule().is_some());
    assert_eq!(Weekly::declared_schedule().expect("declared").cron, "@weekly");
}
