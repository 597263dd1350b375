use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

struct App;

#[kosh_jobs::job]
async fn ping(_: Ping, _app: App) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
