//! Turning script replies into records.

use std::collections::HashMap;

use kosh_jobs_core::admin::{Attempt, AttemptOutcome, MAX_HISTORY};
use kosh_jobs_core::{AttemptError, JobId, JobRecord, JobState, Timestamp};
use redis::Value;

use crate::error::RedisError;
use crate::spec;

pub(crate) fn bad(what: impl std::fmt::Display) -> RedisError {
    RedisError::Protocol(what.to_string())
}

/// A string-like reply.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// An integer reply, or a string holding a number (scores come as strings).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => {
            let s = std::str::from_utf8(b).ok()?;
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
        }
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d as i64),
        _ => None,
    }
}

/// `Nil` (Lua `false`) as `None`.
pub(crate) fn opt_int(v: &Value) -> Result<Option<i64>, RedisError> {
    match v {
        Value::Nil => Ok(None),
        v => int(v)
            .map(Some)
            .ok_or_else(|| bad(format!("expected a number, got {v:?}"))),
    }
}

pub(crate) fn array(v: Value) -> Result<Vec<Value>, RedisError> {
    match v {
        Value::Array(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(bad(format!("expected an array, got {other:?}"))),
    }
}

pub(crate) fn req_int(v: &Value, what: &str) -> Result<i64, RedisError> {
    int(v).ok_or_else(|| bad(format!("{what}: expected a number, got {v:?}")))
}

/// A string reply, taken without copying.
pub(crate) fn take_text(v: Value, what: &str) -> Result<String, RedisError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| bad(format!("{what}: not UTF-8"))),
        v => req_text(&v, what),
    }
}

pub(crate) fn req_text(v: &Value, what: &str) -> Result<String, RedisError> {
    text(v).ok_or_else(|| bad(format!("{what}: expected a string, got {v:?}")))
}

pub(crate) fn opt_json(v: &Value, what: &str) -> Result<Option<serde_json::Value>, RedisError> {
    match v {
        Value::Nil => Ok(None),
        v => {
            let s = req_text(v, what)?;
            serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| bad(format!("{what} is not JSON: {e}")))
        }
    }
}

/// A job as the scripts' `records` returns it (field, value, …: its spec `sp`, state `st`,
/// attempts `a`, and when set started `s`, moved run_at `ra`, finished `f`, errors `e`,
/// progress `pg`, result `r`, lease deadline `le`, ended attempts `h`, the latest attempt's
/// worker number `w` while it runs or once it completed, worker names `wn`, and group `g`).
pub(crate) fn job_record(
    id: JobId,
    queue: &str,
    fields: Vec<Value>,
) -> Result<JobRecord, RedisError> {
    let mut map: HashMap<String, Value> = HashMap::with_capacity(fields.len() / 2);
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(req_text(&k, "job field")?, v);
    }
    let get = |k: &str| map.get(k).unwrap_or(&Value::Nil);
    let ts = |k: &str| -> Result<Option<Timestamp>, RedisError> {
        Ok(opt_int(get(k))?.map(Timestamp::from_millis))
    };
    let spec = spec::decode(&req_text(get("sp"), "job spec")?)?;
    let state_s = req_text(get("st"), "job state")?;
    let state: JobState = state_s.parse().map_err(|e| bad(format!("job {id}: {e}")))?;
    let errors = match get("e") {
        Value::Nil => Vec::new(),
        v => {
            let s = req_text(v, "job errors")?;
            serde_json::from_str::<Vec<AttemptError>>(&format!("[{s}]"))
                .map_err(|e| bad(format!("job {id}: error history is not JSON: {e}")))?
        }
    };
    let started_at = ts("s")?;
    let finished_at = if state.is_final() { ts("f")? } else { None };
    let attempts = u32::try_from(req_int(get("a"), "attempts")?)
        .map_err(|_| bad(format!("job {id}: attempts out of range")))?;
    let history = history(&map, state, attempts, started_at, finished_at, &errors)
        .map_err(|e| bad(format!("job {id}: {e}")))?;
    Ok(JobRecord {
        id,
        name: spec.name,
        queue: queue.to_owned(),
        payload: spec.payload,
        state,
        priority: spec.priority,
        run_at: ts("ra")?.unwrap_or(spec.run_at),
        attempts,
        max_attempts: spec.max_attempts,
        created_at: spec.created_at,
        started_at,
        finished_at,
        errors,
        progress: opt_json(get("pg"), "progress")?,
        result: opt_json(get("r"), "result")?,
        unique_key: spec.unique_key,
        group: text(get("g")),
        trace: spec.trace,
        lease_expires_at: if state == JobState::Running {
            ts("le")?
        } else {
            None
        },
        history,
    })
}

/// An attempt's outcome from its code in the history (see `archive` in `lib.lua`).
fn outcome_of(code: &str) -> Option<AttemptOutcome> {
    Some(match code {
        "c" => AttemptOutcome::Completed,
        "r" => AttemptOutcome::RetryScheduled,
        "f" => AttemptOutcome::Failed,
        "t" => AttemptOutcome::TimedOut,
        "p" => AttemptOutcome::Panicked,
        "l" => AttemptOutcome::LeaseExpired,
        "x" => AttemptOutcome::Released,
        "k" => AttemptOutcome::Cancelled,
        "s" => AttemptOutcome::Snoozed,
        _ => return None,
    })
}

/// A job's attempts: the ended ones (`h`: `attempt,worker,started_at,duration_ms,code;` each),
/// then the latest one while it runs or once it completed (from `run`: attempts, started, `w`).
/// The attempts that failed with an error take the job's errors, pairing from the end.
fn history(
    map: &HashMap<String, Value>,
    state: JobState,
    attempts: u32,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    errors: &[AttemptError],
) -> Result<Vec<Attempt>, String> {
    let mut names: HashMap<String, String> = HashMap::new();
    if let Some(Value::Array(wn)) = map.get("wn") {
        let mut it = wn.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Some(k), Some(v)) = (text(k), text(v)) {
                names.insert(k, v);
            }
        }
    }
    let worker = |w: &str| names.get(w).cloned().unwrap_or_default();
    let mut out = Vec::new();
    if let Some(h) = map.get("h").and_then(text) {
        for entry in h.split(';').filter(|e| !e.is_empty()) {
            let malformed = || format!("malformed attempt history entry `{entry}`");
            let mut f = entry.split(',');
            let mut next = || f.next().ok_or_else(malformed);
            let attempt: u32 = next()?.parse().map_err(|_| malformed())?;
            let w = next()?;
            let start: i64 = next()?.parse().map_err(|_| malformed())?;
            let took: i64 = next()?.parse().map_err(|_| malformed())?;
            let outcome = outcome_of(next()?).ok_or_else(malformed)?;
            out.push(Attempt {
                attempt,
                started_at: Timestamp::from_millis(start),
                worker: worker(w),
                ended_at: Some(Timestamp::from_millis(start.saturating_add(took))),
                outcome: Some(outcome),
                error: None,
            });
        }
    }
    if let (Some(w), Some(started)) = (map.get("w").and_then(text), started_at) {
        let done = state == JobState::Completed;
        out.push(Attempt {
            attempt: attempts,
            started_at: started,
            worker: worker(&w),
            ended_at: if done { finished_at } else { None },
            outcome: done.then_some(AttemptOutcome::Completed),
            error: None,
        });
    }
    let mut errs = errors.iter().rev();
    for a in out.iter_mut().rev() {
        let failed = matches!(
            a.outcome,
            Some(
                AttemptOutcome::RetryScheduled
                    | AttemptOutcome::Failed
                    | AttemptOutcome::TimedOut
                    | AttemptOutcome::Panicked
                    | AttemptOutcome::LeaseExpired
            )
        );
        if failed {
            a.error = errs.next().map(|e| e.error.clone());
        }
    }
    if out.len() > MAX_HISTORY {
        out.drain(..out.len() - MAX_HISTORY);
    }
    Ok(out)
}
