//! The final check: the producer's record of what was enqueued, the workers' execution logs
//! and the store's records, compared; and the report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use kosh_jobs::admin::AttemptOutcome;
use kosh_jobs::{Client, JobState};

use crate::faults::{Cut, Fault};
use crate::jobs::{Act, TIMEOUT};
use crate::ledger::{end_of, Event, Ledger, Line};
use crate::producer::{Enqueued, Produced, KINDS};

/// The figures of a run. Those named `must_be_zero` fail the run when not empty.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) enqueued: u64,
    pub(crate) completed: u64,
    /// Completed jobs the store had already deleted (retention): checked from the logs only.
    pub(crate) completed_purged: u64,
    pub(crate) failed_as_intended: u64,
    /// One-attempt jobs whose only attempt a fault took (started, then the worker was killed
    /// or its lease lost): failed, as their one attempt allows.
    pub(crate) one_attempt_lost_to_fault: u64,
    pub(crate) lost: Vec<String>,
    /// Jobs missing from the store whose last write the store acknowledged at most
    /// [`FAILOVER_WINDOW`] before a cluster failover: a master acknowledges a write before
    /// its replica has it, and a `SIGKILL` loses what it had not sent yet (Redis Cluster's
    /// documented behaviour). Counted apart from `lost`, not hidden.
    pub(crate) lost_to_failover: Vec<String>,
    pub(crate) failed_unexpectedly: Vec<String>,
    pub(crate) failed_without_start: Vec<String>,
    pub(crate) completed_twice: Vec<String>,
    pub(crate) result_without_execution: Vec<String>,
    /// Jobs still scheduled, ready or running after the drain: not lost (the store has them)
    /// but not done, e.g. a backlog the workers did not clear in time.
    pub(crate) non_final: Vec<String>,
    /// The store's counts of non-final jobs per queue, when any.
    pub(crate) non_final_queues: Vec<String>,
    /// Executions of an attempt that another execution of the same attempt already had.
    pub(crate) executions_beyond_attempt: u64,
    /// Keys whose handler returned success more than once (at-least-once: allowed).
    pub(crate) handler_succeeded_twice: u64,
    /// Executions in flight at the faults, summed over the faults.
    pub(crate) in_flight_at_faults: u64,
    /// Per fault: the longest a job waited for its next start after it, and that job.
    pub(crate) waits: Vec<Option<(Duration, u64)>>,
    /// Per fault: for a partition, what the worker cut off did.
    pub(crate) cuts: Vec<Option<CutFigures>>,
}

/// What a worker cut off by a partition did, from its log.
#[derive(Debug, Default)]
pub(crate) struct CutFigures {
    /// Its handlers running when the link went down.
    pub(crate) in_flight: u64,
    /// Of those, the ones that ended (success or failure) while it was cut off.
    pub(crate) ended_while_cut: u64,
    /// Of those, the ones whose job was started again, by any worker, after the cut.
    pub(crate) ran_again: u64,
    /// From the link coming back to its first handler start after that (`None`: it started
    /// none; it may have been killed, or the run ended).
    pub(crate) back_at_work: Option<Duration>,
}

impl Figures {
    /// The must-be-zero figures that are not, by name.
    pub(crate) fn violations<'a>(
        &'a self,
        produced: &'a Produced,
    ) -> Vec<(&'static str, &'a [String])> {
        [
            ("lost", self.lost.as_slice()),
            ("completions recorded twice", &self.completed_twice),
            (
                "stored results from no logged execution",
                &self.result_without_execution,
            ),
            ("unique-key violations", &produced.unique_violations),
            ("non-final jobs after the drain", &self.non_final),
            ("failed unexpectedly", &self.failed_unexpectedly),
            (
                "failed without a started attempt",
                &self.failed_without_start,
            ),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

/// How long before a failover a write acknowledged by the killed master counts as possibly
/// not replicated yet. Replication on one machine lags by far less; a loss older than this is
/// counted as `lost`.
const FAILOVER_WINDOW: Duration = Duration::from_secs(1);

/// Reads each enqueued job back from the store and compares it with the logs.
pub(crate) async fn check(
    client: &Client,
    produced: &Produced,
    ledger: &Ledger,
    faults: &[Fault],
) -> anyhow::Result<Figures> {
    let mut f = Figures {
        enqueued: produced.jobs.len() as u64,
        ..Figures::default()
    };
    let failovers: Vec<u64> = faults
        .iter()
        .filter(|x| x.failover)
        .map(|x| x.at_ms)
        .collect();
    for job in &produced.jobs {
        check_job(client, job, ledger, &failovers, &mut f).await?;
    }
    let mut in_store = 0;
    for c in client.counts().await? {
        let left = c.scheduled + c.ready + c.running;
        if left > 0 {
            in_store += left;
            f.non_final_queues.push(format!(
                "queue {}: {} scheduled, {} ready, {} running",
                c.queue, c.scheduled, c.ready, c.running
            ));
        }
    }
    let listed = f.non_final.len() as u64;
    if in_store > listed {
        // Jobs of enqueues whose answer was lost (stored, though the producer saw an error).
        f.non_final.push(format!(
            "{} more in the store, not among the acknowledged enqueues",
            in_store - listed
        ));
    }
    for lines in ledger.by_key.values() {
        let mut per_attempt: HashMap<u32, u64> = HashMap::new();
        for l in lines.iter().filter(|l| l.event == Event::Start) {
            *per_attempt.entry(l.attempt).or_default() += 1;
        }
        f.executions_beyond_attempt += per_attempt.values().map(|n| n - 1).sum::<u64>();
        if lines.iter().filter(|l| l.event == Event::Done).count() > 1 {
            f.handler_succeeded_twice += 1;
        }
    }
    let acts: HashMap<u64, &Enqueued> = produced.jobs.iter().map(|j| (j.key, j)).collect();
    for (i, fault) in faults.iter().enumerate() {
        let next = faults.get(i + 1).map_or(u64::MAX, |n| n.at_ms);
        let (wait, in_flight) = wait_after(fault.at_ms, next, &acts, ledger);
        f.waits.push(wait);
        f.in_flight_at_faults += in_flight;
        f.cuts.push(
            fault
                .cut
                .map(|c| cut_figures(fault.at_ms, &c, &acts, ledger)),
        );
    }
    Ok(f)
}

/// What the worker `cut` names did about its partition, which began at `t`.
fn cut_figures(t: u64, cut: &Cut, jobs: &HashMap<u64, &Enqueued>, ledger: &Ledger) -> CutFigures {
    let healed = cut.healed.map_or(u64::MAX, |(ms, _)| ms);
    let mut c = CutFigures::default();
    let mut first_back: Option<u64> = None;
    for (key, lines) in &ledger.by_key {
        let act = jobs.get(key).map(|j| j.act);
        for l in lines
            .iter()
            .filter(|l| l.pid == cut.pid && l.event == Event::Start)
        {
            if l.ms >= healed && first_back.is_none_or(|b| l.ms < b) {
                first_back = Some(l.ms);
            }
            // A handler that timed out logs no end: it ended at the deadline.
            let end = end_of(lines, l).map(|e| e.ms).or_else(|| {
                (act == Some(Act::TimeoutOnce) && l.attempt == 1)
                    .then(|| l.ms + TIMEOUT.as_millis() as u64)
            });
            if l.ms > t || end.is_some_and(|e| e <= t) {
                continue;
            }
            c.in_flight += 1;
            if end.is_some_and(|e| e < healed) {
                c.ended_while_cut += 1;
            }
            if lines.iter().any(|o| o.event == Event::Start && o.ms > t) {
                c.ran_again += 1;
            }
        }
    }
    c.back_at_work = first_back.map(|b| Duration::from_millis(b - healed));
    c
}

async fn check_job(
    client: &Client,
    job: &Enqueued,
    ledger: &Ledger,
    failovers: &[u64],
    f: &mut Figures,
) -> anyhow::Result<()> {
    let lines = ledger.lines(job.key);
    let logged_done = |pid: u32, attempt: u32| {
        lines
            .iter()
            .any(|l| l.event == Event::Done && l.pid == pid && l.attempt == attempt)
    };
    let any_done = lines.iter().any(|l| l.event == Event::Done);
    let name = format!("job {} (key {}, {:?})", job.id, job.key, job.act);
    let Some(rec) = client.get(job.id).await? else {
        if any_done && !job.act.ends_failed() {
            f.completed += 1;
            f.completed_purged += 1;
        } else {
            // Its last write the store acknowledged: the enqueue, or a logged execution's
            // start or end (a renewal or an outcome stored about then).
            let last = lines.iter().map(|l| l.ms).fold(job.acked_ms, u64::max);
            let window = FAILOVER_WINDOW.as_millis() as u64;
            match failovers.iter().find(|&&t| t >= last && t - last <= window) {
                Some(&t) => f.lost_to_failover.push(format!(
                    "{name}: not in the store; last acknowledged write {} ms before a failover",
                    t - last
                )),
                None => f
                    .lost
                    .push(format!("{name}: not in the store, no success logged")),
            }
        }
        return Ok(());
    };
    match rec.state {
        JobState::Completed => {
            f.completed += 1;
            let completions = rec
                .history
                .iter()
                .filter(|a| a.outcome == Some(AttemptOutcome::Completed))
                .count();
            if completions > 1 {
                f.completed_twice
                    .push(format!("{name}: {completions} completed attempts"));
            }
            let from = rec.result.as_ref().and_then(|r| r.as_str()).and_then(|r| {
                let (pid, attempt) = r.split_once(' ')?;
                Some((pid.parse().ok()?, attempt.parse().ok()?))
            });
            match from {
                Some((pid, attempt)) if logged_done(pid, attempt) => {}
                _ => f.result_without_execution.push(format!(
                    "{name}: result {:?} matches no logged success",
                    rec.result
                )),
            }
            if job.act.ends_failed() {
                f.failed_unexpectedly
                    .push(format!("{name}: completed, though it always fails"));
            }
        }
        JobState::Failed => {
            let started = lines.iter().any(|l| l.event == Event::Start);
            if !started {
                f.failed_without_start.push(format!(
                    "{name}: failed after {} attempts, none started (last error: {})",
                    rec.attempts,
                    rec.last_error().unwrap_or("none")
                ));
            } else if job.act.ends_failed() {
                f.failed_as_intended += 1;
            } else if job.one_attempt {
                f.one_attempt_lost_to_fault += 1;
            } else {
                f.failed_unexpectedly.push(format!(
                    "{name}: failed after {} attempts: {}",
                    rec.attempts,
                    rec.last_error().unwrap_or("no error")
                ));
            }
        }
        JobState::Cancelled => f.lost.push(format!("{name}: cancelled")),
        s => f
            .non_final
            .push(format!("{name}: still {s:?} after the drain")),
    }
    Ok(())
}

/// The longest wait after a fault at `t` (ms since the epoch): over the jobs that were in
/// flight at `t` (started, not ended) and had to start again (not because the attempt was
/// meant to fail), and over the jobs due but not yet started at `t`, the time from `t` to
/// their next start, if it came before the next fault (`until`): a job still waiting then
/// is counted from that fault, which may well be what delays it. Also returns how many
/// executions were in flight at `t`.
fn wait_after(
    t: u64,
    until: u64,
    jobs: &HashMap<u64, &Enqueued>,
    ledger: &Ledger,
) -> (Option<(Duration, u64)>, u64) {
    let mut longest: Option<(u64, u64)> = None;
    let mut in_flight = 0;
    let mut consider = |key: u64, lines: &[Line]| {
        let next = lines.iter().find(|l| l.event == Event::Start && l.ms > t);
        if let Some(next) = next.filter(|n| n.ms < until) {
            let w = next.ms - t;
            if longest.is_none_or(|(lw, _)| w > lw) {
                longest = Some((w, key));
            }
        }
    };
    for (&key, job) in jobs {
        let lines = ledger.lines(key);
        let started_before = lines.iter().any(|l| l.event == Event::Start && l.ms <= t);
        if !started_before {
            if job.due_ms <= t {
                consider(key, lines);
            }
            continue;
        }
        let open = lines.iter().filter(|l| {
            l.event == Event::Start && l.ms <= t && end_of(lines, l).is_none_or(|e| e.ms > t)
        });
        let mut rerun = false;
        for s in open {
            in_flight += 1;
            let ended_by_design = job.act.fails(s.attempt)
                || end_of(lines, s).is_some_and(|e| e.event == Event::Fail);
            rerun |= !ended_by_design;
        }
        if rerun {
            consider(key, lines);
        }
    }
    (
        longest.map(|(w, k)| (Duration::from_millis(w), k)),
        in_flight,
    )
}

/// The report, as printed.
pub(crate) fn report(
    head: &str,
    produced: &Produced,
    faults: &[Fault],
    ledger: &Ledger,
    f: &Figures,
) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "{head}");
    let _ = writeln!(r, "faults injected: {}", faults.len());
    for ((fault, wait), cut) in faults.iter().zip(&f.waits).zip(&f.cuts) {
        let wait = match wait {
            Some((w, key)) => format!("longest wait after it {} ms (key {key})", w.as_millis()),
            None => "no job waited on it".into(),
        };
        let _ = writeln!(
            r,
            "  {:7.1} s  {}; {wait}",
            fault.offset.as_secs_f64(),
            fault.what
        );
        if let (Some(c), Some(cut)) = (cut, fault.cut) {
            let healed = match cut.healed {
                Some((_, at)) => format!("link back at {:.1} s", at.as_secs_f64()),
                None => "link never back".into(),
            };
            let back = match c.back_at_work {
                Some(d) => format!("its first start {} ms after that", d.as_millis()),
                None => "it started nothing after that".into(),
            };
            let _ = writeln!(
                r,
                "             {healed}, {back}; of its {} handlers running at the cut, {} \
                 ended while it was cut off and {} jobs started again",
                c.in_flight, c.ended_while_cut, c.ran_again
            );
        }
    }
    let _ = writeln!(r, "jobs enqueued: {}", f.enqueued);
    for (k, n) in KINDS.iter().zip(produced.by_kind) {
        let _ = writeln!(r, "  {k}: {n}");
    }
    let _ = writeln!(
        r,
        "enqueues that failed or timed out (job may exist, not checked): {}",
        produced.ambiguous.len()
    );
    for e in &produced.errors {
        let _ = writeln!(r, "  {e}");
    }
    let _ = writeln!(
        r,
        "completed: {} ({} of them already deleted by retention, checked from the logs)",
        f.completed, f.completed_purged
    );
    let _ = writeln!(r, "failed as intended: {}", f.failed_as_intended);
    let _ = writeln!(
        r,
        "one-attempt jobs failed because a fault took their started attempt (allowed): {}",
        f.one_attempt_lost_to_fault
    );
    let list = |r: &mut String, name: &str, v: &[String]| {
        let _ = writeln!(r, "{name} (must be 0): {}", v.len());
        for x in v.iter().take(10) {
            let _ = writeln!(r, "  {x}");
        }
    };
    list(&mut r, "lost", &f.lost);
    let _ = writeln!(
        r,
        "lost to a failover (allowed: acknowledged by a master, not yet on its replica when \
         it was killed; Redis Cluster replicates asynchronously): {}",
        f.lost_to_failover.len()
    );
    for x in f.lost_to_failover.iter().take(10) {
        let _ = writeln!(r, "  {x}");
    }
    list(
        &mut r,
        "completions recorded twice in the store",
        &f.completed_twice,
    );
    list(
        &mut r,
        "stored results from no logged execution",
        &f.result_without_execution,
    );
    list(
        &mut r,
        &format!(
            "unique-key violations (of {} second enqueues while live)",
            produced.unique_pairs
        ),
        &produced.unique_violations,
    );
    list(&mut r, "non-final jobs after the drain", &f.non_final);
    for q in &f.non_final_queues {
        let _ = writeln!(r, "  in the store: {q}");
    }
    list(&mut r, "failed unexpectedly", &f.failed_unexpectedly);
    list(
        &mut r,
        "failed without a started attempt",
        &f.failed_without_start,
    );
    let _ = writeln!(
        r,
        "executions logged: {} in {} logs ({} torn lines)",
        ledger.starts(),
        ledger.files,
        ledger.torn
    );
    let _ = writeln!(
        r,
        "executions beyond one per attempt: {} (executions in flight at the faults: {})",
        f.executions_beyond_attempt, f.in_flight_at_faults
    );
    let _ = writeln!(
        r,
        "jobs whose handler succeeded twice (at-least-once; the store kept one): {}",
        f.handler_succeeded_twice
    );
    let longest = f.waits.iter().flatten().max_by_key(|(w, _)| *w);
    let _ = writeln!(
        r,
        "longest wait of a ready job after a fault: {} (from the fault to the job's next \
         logged start before the next fault, over jobs due or in flight at the fault)",
        match longest {
            Some((w, key)) => format!("{} ms (key {key})", w.as_millis()),
            None => "none".into(),
        }
    );
    r
}
