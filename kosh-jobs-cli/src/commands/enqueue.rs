//! `enqueue NAME --queue Q --payload JSON`.

use kosh_jobs::backend::{validate_job_name, validate_queue_name};
use kosh_jobs::{Backend, Client, NewJob};
use serde_json::json;

use super::Session;
use crate::args::EnqueueArgs;
use crate::error::{CliError, Context as _};
use crate::output::line;
use crate::time;

/// Checks the job before connecting: names, and a payload that is JSON.
pub(super) fn check(a: &EnqueueArgs) -> Result<(), CliError> {
    validate_job_name(&a.name).map_err(CliError::Usage)?;
    validate_queue_name(&a.queue).map_err(CliError::Usage)?;
    serde_json::from_str::<serde_json::Value>(&a.payload)
        .map_err(|e| CliError::Usage(format!("--payload is not JSON: {e}")))?;
    if a.unique.as_deref() == Some("") {
        return Err(CliError::Usage("--unique must not be empty".into()));
    }
    Ok(())
}

pub(super) async fn enqueue(s: &Session, a: &EnqueueArgs) -> Result<(), CliError> {
    let now = s.admin.backend().clock().now();
    let run_at = now + a.delay.unwrap_or_default();
    let mut job = NewJob::new(&a.name, &a.queue, &a.payload, run_at);
    job.priority = a.priority;
    job.max_attempts = a.max_attempts;
    job.unique_key = a.unique.clone();
    let client = Client::new(s.admin.backend().clone());
    let out = client
        .push_raw(vec![job])
        .await
        .ctx(&s.target, "cannot enqueue the job")?;
    let Some(e) = out.first() else {
        return Err(CliError::Failed("the store returned no id".into()));
    };
    if s.out.json {
        return s.out.json(&json!({
            "id": e.id.get(),
            "existing": e.existing,
            "name": a.name,
            "queue": a.queue,
            "run_at": time::iso(run_at),
        }));
    }
    if e.existing {
        line(&format!(
            "job {} already holds the unique key {:?}: no job added",
            e.id,
            a.unique.as_deref().unwrap_or_default()
        ))
    } else if run_at > now {
        line(&format!(
            "enqueued job {} ({} on {}), runs {}",
            e.id,
            a.name,
            a.queue,
            time::both(run_at, now)
        ))
    } else {
        line(&format!(
            "enqueued job {} ({} on {})",
            e.id, a.name, a.queue
        ))
    }
}
