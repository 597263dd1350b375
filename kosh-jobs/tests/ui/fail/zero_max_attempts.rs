use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job(max_attempts = 0)]
async fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
