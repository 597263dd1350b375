use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job(crate = "my_app::kosh_jobs")]
async fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
