use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

#[kosh_jobs::job]
async fn ping<S: Send>(_: Ping, _: kosh_jobs::JobContext<S>) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
