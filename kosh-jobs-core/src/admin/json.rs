//! Jobs and workers as JSON, for operator tools: the `kosh-jobs` CLI's `--json` output and the
//! dashboard's API write them through these, so both show the same fields under the same
//! names, each with its own [`TimeFormat`].
//!
//! Job values stay as they were stored: the payload is the job's JSON (or its text, when it
//! is not JSON), progress and results are JSON values, errors are strings.

use serde_json::{json, Map, Value};

use crate::admin::LiveWorker;
use crate::clock::Timestamp;
use crate::record::JobRecord;

/// How a time is written.
///
/// ```
/// use kosh_jobs::admin::json::TimeFormat;
/// use kosh_jobs::Timestamp;
/// let t = Timestamp::from_millis(1_748_743_800_123);
/// assert_eq!(TimeFormat::Millis.time(t), serde_json::json!(1_748_743_800_123_i64));
/// assert_eq!(TimeFormat::Rfc3339.time(t), "2025-06-01T02:10:00.123Z");
/// assert_eq!(TimeFormat::Rfc3339.opt_time(None), serde_json::Value::Null);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeFormat {
    /// Milliseconds since the Unix epoch, as a number: for a script that shows times itself.
    Millis,
    /// RFC 3339 in UTC with milliseconds, as a string (`2025-06-01T02:10:00.123Z`); a year
    /// outside 0000..=9999 is written with its sign (`+10000`, `-0001`).
    Rfc3339,
}

impl TimeFormat {
    /// `t` in this format.
    pub fn time(self, t: Timestamp) -> Value {
        match self {
            TimeFormat::Millis => Value::from(t.as_millis()),
            TimeFormat::Rfc3339 => Value::String(rfc3339(t)),
        }
    }

    /// `t` in this format, or `null`.
    pub fn opt_time(self, t: Option<Timestamp>) -> Value {
        t.map_or(Value::Null, |t| self.time(t))
    }
}

/// `t` as RFC 3339 in UTC with milliseconds: `2025-06-01T02:10:00.123Z`.
///
/// ```
/// use kosh_jobs::admin::json::rfc3339;
/// use kosh_jobs::Timestamp;
/// assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00.000Z");
/// assert_eq!(rfc3339(Timestamp::from_millis(-1)), "1969-12-31T23:59:59.999Z");
/// ```
pub fn rfc3339(t: Timestamp) -> String {
    const DAY: i64 = 86_400_000;
    let ms = t.as_millis();
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY));
    let in_day = ms.rem_euclid(DAY);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    };
    format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// The proleptic Gregorian (year, month, day) of a number of days since 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`: days are counted in 400-year eras from 0000-03-01, so
/// that the leap day ends each year of the count.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A stored JSON text as a JSON value, or as a string when it is not JSON.
///
/// ```
/// use kosh_jobs::admin::json::stored_json;
/// assert_eq!(stored_json(r#"{"a":1}"#), serde_json::json!({"a": 1}));
/// assert_eq!(stored_json("not json"), serde_json::json!("not json"));
/// ```
pub fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Which fields of a job [`JobJson::to_value`] writes, and how.
///
/// Always: `id`, `name`, `queue`, `state`, `priority`, `attempts`, `max_attempts`,
/// `created_at`, `run_at`, `started_at`, `finished_at`, `unique_key`, `group`, `last_error`. On
/// request: the payload, the outcome (`progress`, `result`) and the history
/// (`lease_expires_at`, `trace`, every attempt's error in `errors`, the attempts in `history`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kosh_jobs::Error> {
/// use kosh_jobs::admin::json::{JobJson, TimeFormat};
/// use kosh_jobs::{memory::MemoryBackend, Backend, Clock, NewJob, Timestamp};
///
/// let (clock, _hand) = Clock::manual_at(Timestamp::from_millis(1_748_743_800_000));
/// let backend = MemoryBackend::with_clock(clock);
/// let job = NewJob::new("mail", "default", r#"{"to":"a@b"}"#, backend.clock().now());
/// let id = backend.push(vec![job]).await?[0].id;
/// let job = backend.get(id).await?.expect("stored");
///
/// let v = JobJson::new(TimeFormat::Rfc3339).payload(true).to_value(&job);
/// assert_eq!(v["state"], "ready");
/// assert_eq!(v["created_at"], "2025-06-01T02:10:00.000Z");
/// assert_eq!(v["payload"]["to"], "a@b");
/// assert!(v.get("history").is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobJson {
    time: TimeFormat,
    last_error_chars: Option<usize>,
    payload: bool,
    outcome: bool,
    history: bool,
}

impl JobJson {
    /// The fields every view has, with times in `time`.
    pub fn new(time: TimeFormat) -> Self {
        JobJson {
            time,
            last_error_chars: None,
            payload: false,
            outcome: false,
            history: false,
        }
    }

    /// Cuts `last_error` to `max` characters, marking the cut with `…` (for lists).
    pub fn last_error_chars(mut self, max: usize) -> Self {
        self.last_error_chars = Some(max);
        self
    }

    /// Also writes `payload`, as [`stored_json`] reads it.
    pub fn payload(mut self, yes: bool) -> Self {
        self.payload = yes;
        self
    }

    /// Also writes `progress` and `result`.
    pub fn outcome(mut self, yes: bool) -> Self {
        self.outcome = yes;
        self
    }

    /// Also writes `lease_expires_at`, `trace` (the `traceparent` it was enqueued with, or
    /// null), `errors` (each attempt's error: `attempt`, `error`,
    /// `at`) and `history` (each attempt: `attempt`, `worker`, `started_at`, `ended_at`,
    /// `duration_ms`, `outcome`, `error`).
    pub fn history(mut self, yes: bool) -> Self {
        self.history = yes;
        self
    }

    /// The job as a JSON object.
    pub fn to_value(&self, j: &JobRecord) -> Value {
        let t = self.time;
        let last_error = j.last_error().map(|e| match self.last_error_chars {
            Some(max) => cut(e, max),
            None => e.to_owned(),
        });
        let mut v = Map::new();
        for (k, x) in [
            ("id", json!(j.id.get())),
            ("name", json!(j.name)),
            ("queue", json!(j.queue)),
            ("state", json!(j.state.as_str())),
            ("priority", json!(j.priority)),
            ("attempts", json!(j.attempts)),
            ("max_attempts", json!(j.max_attempts)),
            ("created_at", t.time(j.created_at)),
            ("run_at", t.time(j.run_at)),
            ("started_at", t.opt_time(j.started_at)),
            ("finished_at", t.opt_time(j.finished_at)),
            ("unique_key", json!(j.unique_key)),
            ("group", json!(j.group)),
            ("last_error", json!(last_error)),
        ] {
            v.insert(k.to_owned(), x);
        }
        if self.payload {
            v.insert("payload".into(), stored_json(&j.payload));
        }
        if self.outcome {
            v.insert("progress".into(), json!(j.progress));
            v.insert("result".into(), json!(j.result));
        }
        if self.history {
            v.insert("lease_expires_at".into(), t.opt_time(j.lease_expires_at));
            v.insert("trace".into(), json!(j.trace));
            let errors = j
                .errors
                .iter()
                .map(|e| json!({"attempt": e.attempt, "error": e.error, "at": t.time(e.at)}))
                .collect();
            v.insert("errors".into(), errors);
            let history = j
                .history
                .iter()
                .map(|a| {
                    json!({
                        "attempt": a.attempt,
                        "worker": a.worker,
                        "started_at": t.time(a.started_at),
                        "ended_at": t.opt_time(a.ended_at),
                        "duration_ms": a.ended_at.map(|e| {
                            u64::try_from(e.saturating_duration_since(a.started_at).as_millis())
                                .unwrap_or(u64::MAX)
                        }),
                        "outcome": a.outcome.map(|o| o.as_str()),
                        "error": a.error,
                    })
                })
                .collect();
            v.insert("history".into(), history);
        }
        Value::Object(v)
    }
}

/// `s` cut to `max` characters, with `…` after the cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// A live worker as a JSON object: `id`, `host`, `pid`, `version`, `queues`, `concurrency`,
/// `started_at`, `last_seen`, and `jobs`, the ids of the jobs it runs.
///
/// ```
/// use kosh_jobs::admin::json::{worker, TimeFormat};
/// use kosh_jobs::admin::{LiveWorker, WorkerInfo};
/// use kosh_jobs::{JobId, Timestamp};
///
/// let w = LiveWorker {
///     info: WorkerInfo {
///         id: "w1".into(),
///         host: "box".into(),
///         pid: 42,
///         version: "0.1.0".into(),
///         queues: vec!["mail".into()],
///         concurrency: 4,
///         started_at: Timestamp::from_millis(1_000),
///     },
///     last_seen: Timestamp::from_millis(2_000),
///     jobs: vec![JobId::new(9)],
/// };
/// let v = worker(&w, TimeFormat::Millis);
/// assert_eq!((v["pid"].clone(), v["last_seen"].clone(), v["jobs"].clone()), (42.into(), 2_000.into(), serde_json::json!([9])));
/// ```
pub fn worker(w: &LiveWorker, time: TimeFormat) -> Value {
    json!({
        "id": w.info.id,
        "host": w.info.host,
        "pid": w.info.pid,
        "version": w.info.version,
        "queues": w.info.queues,
        "concurrency": w.info.concurrency,
        "started_at": time.time(w.info.started_at),
        "last_seen": time.time(w.last_seen),
        "jobs": w.jobs.iter().map(|j| j.get()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{Attempt, AttemptOutcome};
    use crate::record::{AttemptError, JobId, JobState};

    #[test]
    fn rfc3339_dates() {
        let at = |ms: i64| rfc3339(Timestamp::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z"); // no Feb 29 in 2100
        assert_eq!(at(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert_eq!(at(-62_167_219_200_001), "-0001-12-31T23:59:59.999Z");
        assert_eq!(at(253_402_300_800_000), "+10000-01-01T00:00:00.000Z");
        // The extremes do not overflow.
        assert!(at(i64::MAX).ends_with('Z'));
        assert!(at(i64::MIN).starts_with('-'));
    }

    #[test]
    fn cut_marks_the_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("ééé", 2), "éé…");
    }

    fn record() -> JobRecord {
        let at = Timestamp::from_millis(60_000);
        JobRecord {
            id: JobId::new(3),
            name: "import".into(),
            queue: "csv".into(),
            payload: "{x".into(),
            state: JobState::Failed,
            priority: 0,
            run_at: at,
            attempts: 1,
            max_attempts: 1,
            created_at: at,
            started_at: None,
            finished_at: None,
            errors: vec![AttemptError {
                attempt: 1,
                error: "é".repeat(5),
                at: Timestamp::from_millis(61_500),
            }],
            progress: None,
            result: None,
            unique_key: None,
            group: None,
            trace: None,
            lease_expires_at: None,
            history: vec![Attempt {
                attempt: 1,
                started_at: Timestamp::from_millis(61_000),
                worker: "w1".into(),
                ended_at: Some(Timestamp::from_millis(61_500)),
                outcome: Some(AttemptOutcome::Failed),
                error: Some("é".repeat(5)),
            }],
        }
    }

    #[test]
    fn a_job_has_the_fields_asked_for() {
        let j = record();
        let short = JobJson::new(TimeFormat::Millis)
            .last_error_chars(2)
            .to_value(&j);
        assert_eq!(
            short,
            json!({
                "id": 3, "name": "import", "queue": "csv", "state": "failed", "priority": 0,
                "attempts": 1, "max_attempts": 1, "created_at": 60_000,
                "run_at": 60_000, "started_at": null, "finished_at": null, "unique_key": null,
                "group": null, "last_error": "éé…",
            })
        );
        let full = JobJson::new(TimeFormat::Rfc3339)
            .payload(true)
            .outcome(true)
            .history(true)
            .to_value(&j);
        assert_eq!(full["created_at"], "1970-01-01T00:01:00.000Z");
        assert_eq!(full["last_error"], "ééééé");
        assert_eq!(full["payload"], "{x", "not JSON: the text");
        assert_eq!(
            (&full["progress"], &full["result"]),
            (&Value::Null, &Value::Null)
        );
        assert_eq!(full["lease_expires_at"], Value::Null);
        assert_eq!(
            full["errors"],
            json!([{"attempt": 1, "error": "ééééé", "at": "1970-01-01T00:01:01.500Z"}])
        );
        assert_eq!(
            full["history"],
            json!([{
                "attempt": 1, "worker": "w1", "started_at": "1970-01-01T00:01:01.000Z",
                "ended_at": "1970-01-01T00:01:01.500Z", "duration_ms": 500,
                "outcome": "failed", "error": "ééééé",
            }])
        );
    }
}
