use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

struct Pong;

#[kosh_jobs::job]
async fn ping(_: Ping) -> Result<Pong, kosh_jobs::JobError> {
    Ok(Pong)
}

fn main() {}
