//! Jobs shared by a test and the processes it starts.

use kosh_jobs::{job, JobError};
use serde::{Deserialize, Serialize};

/// Doubles `n`; fails for good when `n` is negative.
#[derive(Serialize, Deserialize)]
pub struct Double {
    /// The number.
    pub n: i64,
}

/// The handler of [`Double`].
#[job(queue = "test-child")]
pub async fn double(job: Double) -> Result<i64, JobError> {
    if job.n < 0 {
        return Err(JobError::permanent(format!("{} is negative", job.n)));
    }
    Ok(job.n * 2)
}
