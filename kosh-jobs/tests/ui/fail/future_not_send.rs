use serde::{Deserialize, Serialize};
use std::rc::Rc;

#[derive(Serialize, Deserialize)]
struct Ping;

async fn later() {}

#[kosh_jobs::job]
async fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    let local = Rc::new(1);
    later().await;
    drop(local);
    Ok(())
}

fn main() {}
