use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job(backoff = linear(10s))]
async fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
