use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

// Three mistakes, three errors: a zero base, a cap above 30 days, a jitter above 1.
#[kosh_jobs::job(backoff = exponential(0s, max = 31d, jitter = 1.5))]
async fn ping(_: Ping) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
