use kosh_jobs::JobContext;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job]
async fn ping(_: Ping, _: JobContext<()>, _retries: u32) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
