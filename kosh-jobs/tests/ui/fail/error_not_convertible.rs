use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job]
async fn ping(_: Ping) -> Result<(), i32> {
    Err(7)
}

fn main() {}
