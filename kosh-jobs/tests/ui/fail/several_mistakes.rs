use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

// Every mistake is reported in one compilation.
#[kosh_jobs::job(queue = "", max_attempts = 0, timeout = 5, prio = 1, unique = "a-{}")]
fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
