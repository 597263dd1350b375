use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job]
async fn ping(_: Ping) -> u32 {
    7
}

fn main() {}
