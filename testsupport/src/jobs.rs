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

/// What a [`Scripted`] job does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Reports progress `{"step": 1}`, then completes.
    ProgressThenComplete,
    /// Fails its first attempt (retry at once), completes the second.
    FailOnce,
    /// Fails for good.
    Fail,
}

/// A job whose lifecycle its payload scripts, for the events tests.
#[derive(Serialize, Deserialize)]
pub struct Scripted {
    /// What it does.
    pub script: Script,
}

/// The handler of [`Scripted`].
#[job(queue = "scripted", max_attempts = 3, backoff = none)]
pub async fn scripted(job: Scripted, ctx: kosh_jobs::JobContext<()>) -> Result<(), JobError> {
    match job.script {
        Script::ProgressThenComplete => {
            ctx.progress(serde_json::json!({ "step": 1 })).await?;
            Ok(())
        }
        Script::FailOnce if ctx.attempt() == 1 => Err(JobError::retryable("first attempt fails")),
        Script::FailOnce => Ok(()),
        Script::Fail => Err(JobError::permanent("scripted to fail")),
    }
}
