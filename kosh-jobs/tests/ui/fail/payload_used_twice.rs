use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job]
async fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

#[kosh_jobs::job]
async fn ping_again(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
