//! Deciding what a due schedule fires: which of its due ticks, and its next cursor. Pure, so
//! every policy is tested on plain times.

use std::time::Duration;

use super::{FiredTick, Missed, Overlap, ScheduleFire, ScheduleRecord, Timing};
use crate::clock::Timestamp;

/// A tick fired more than this after its time is reported as late.
pub(crate) const LATE_AFTER: Duration = Duration::from_secs(1);

/// `Missed::Skip` still fires a tick this old at most (or one interval, if shorter).
const SKIP_TOLERANCE: Duration = Duration::from_secs(60);

/// Missed ticks are counted up to this many (for the metrics), not all of a long downtime.
const COUNT_CAP: u64 = 10_000;

/// What firing a due schedule does.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The request for the backend.
    pub(crate) fire: ScheduleFire,
    /// Due ticks that do not fire (missed), counted up to a cap.
    pub(crate) skipped: u64,
    /// How many of the fired ticks are late.
    pub(crate) late: u64,
}

/// What `rec` fires at `now`; `None` if it is not due (no cursor, paused, or in the future).
pub(crate) fn plan(rec: &ScheduleRecord, timing: &Timing, now: Timestamp) -> Option<Plan> {
    let cursor = rec.next_fire?;
    if rec.paused || cursor > now {
        return None;
    }
    let def = &rec.def;
    let last = timing.last_at_or_before(cursor, now).unwrap_or(cursor);
    let age = now.saturating_duration_since(last);
    let mut ticks: Vec<Timestamp> = match def.missed {
        Missed::Skip => {
            let tolerance = timing.interval_at(last).min(SKIP_TOLERANCE);
            if age <= tolerance {
                vec![last]
            } else {
                Vec::new()
            }
        }
        Missed::Latest { grace_ms } => {
            let grace = grace_ms.map_or_else(|| timing.interval_at(last), Duration::from_millis);
            if age <= grace.max(LATE_AFTER) {
                vec![last]
            } else {
                Vec::new()
            }
        }
        Missed::All { max } => {
            let mut out = vec![last];
            while out.len() < max.max(1) as usize {
                match out.last().and_then(|t| timing.previous(cursor, *t)) {
                    Some(p) => out.push(p),
                    None => break,
                }
            }
            out.reverse();
            out
        }
    };
    // The end and the run limit cut the ticks.
    if let Some(end) = def.end_at {
        ticks.retain(|t| *t <= end);
    }
    let mut ended = false;
    if let Some(max) = def.max_runs {
        let left = max.saturating_sub(rec.runs);
        if ticks.len() as u64 >= left {
            // Keep the most recent ones.
            let drop = ticks.len() - usize::try_from(left).unwrap_or(usize::MAX).min(ticks.len());
            ticks.drain(..drop);
            ended = true;
        }
    }
    let due = count_due(timing, cursor, last);
    let skipped = due.saturating_sub(ticks.len() as u64);
    let next_fire = if ended {
        None
    } else {
        timing
            .next_after(last)
            .filter(|n| def.end_at.is_none_or(|e| *n <= e))
    };
    let late = ticks
        .iter()
        .filter(|t| now.saturating_duration_since(**t) > LATE_AFTER)
        .count() as u64;
    Some(Plan {
        fire: ScheduleFire {
            id: def.id.clone(),
            revision: rec.revision,
            cursor,
            next_fire,
            ticks: ticks
                .into_iter()
                .map(|at| FiredTick {
                    at,
                    job: def.job_at(at),
                })
                .collect(),
            skip_if_live: def.overlap == Overlap::Skip,
        },
        skipped,
        late,
    })
}

/// How many ticks there are from `cursor` to `last`, both included (up to a cap).
fn count_due(timing: &Timing, cursor: Timestamp, last: Timestamp) -> u64 {
    match timing {
        Timing::Interval(d) => {
            let step = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
            let span = u64::try_from(last.as_millis() - cursor.as_millis()).unwrap_or(0);
            span / step + 1
        }
        Timing::Cron(..) => {
            let mut n = 1;
            let mut t = cursor;
            while t < last && n < COUNT_CAP {
                match timing.next_after(t) {
                    Some(next) if next <= last => {
                        n += 1;
                        t = next;
                    }
                    _ => break,
                }
            }
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Every, ScheduleDef};

    const SEC: Duration = Duration::from_secs(1);

    fn record(every: Every, missed: Missed, cursor: Timestamp) -> (ScheduleRecord, Timing) {
        let def = ScheduleDef {
            id: "s".into(),
            every: every.clone(),
            job: "tick".into(),
            queue: "default".into(),
            payload: "null".into(),
            priority: 0,
            max_attempts: 1,
            start_at: None,
            end_at: None,
            max_runs: None,
            missed,
            overlap: Overlap::Allow,
            group: None,
        };
        let timing = Timing::new(&every).expect("a valid timing");
        (
            ScheduleRecord {
                def,
                revision: 1,
                paused: false,
                next_fire: Some(cursor),
                last_fire: None,
                last_job: None,
                runs: 0,
            },
            timing,
        )
    }

    fn ticks(p: &Plan) -> Vec<i64> {
        p.fire.ticks.iter().map(|t| t.at.as_millis()).collect()
    }

    const MIN: Every = Every::Interval { ms: 60_000 };

    #[test]
    fn an_on_time_tick_fires_under_every_policy() {
        let c = Timestamp::from_millis(600_000);
        for missed in [Missed::Skip, Missed::default(), Missed::All { max: 5 }] {
            let (rec, timing) = record(MIN, missed, c);
            assert!(plan(&rec, &timing, c - SEC).is_none(), "not due yet");
            let p = plan(&rec, &timing, c + Duration::from_millis(20)).expect("due");
            assert_eq!(ticks(&p), vec![600_000], "{missed:?}");
            assert_eq!((p.skipped, p.late), (0, 0));
            assert_eq!(p.fire.next_fire, Some(c + Duration::from_secs(60)));
            assert_eq!(p.fire.cursor, c);
        }
    }

    #[test]
    fn ten_missed_ticks_under_each_policy() {
        let c = Timestamp::from_millis(600_000);
        // Down for ten ticks: now is 10 minutes and 5 seconds after the cursor.
        let now = c + Duration::from_secs(605);
        // Skip fires the latest tick only while it is due now: at most a minute old.
        let (rec, timing) = record(MIN, Missed::Skip, c);
        let p = plan(&rec, &timing, now).expect("due");
        assert_eq!(ticks(&p), vec![1_200_000]);
        assert_eq!(p.skipped, 10);
        assert_eq!(p.fire.next_fire, Some(c + Duration::from_secs(660)));
        let hourly = Every::Interval { ms: 3_600_000 };
        let (rec, timing) = record(hourly, Missed::Skip, c);
        let p = plan(&rec, &timing, c + Duration::from_secs(10 * 3600 + 300)).expect("due");
        assert!(ticks(&p).is_empty(), "the latest is 5 minutes old");
        assert_eq!(p.skipped, 11);
        assert_eq!(p.fire.next_fire, Some(c + Duration::from_secs(11 * 3600)));

        let (rec, timing) = record(MIN, Missed::default(), c);
        let p = plan(&rec, &timing, now).expect("due");
        assert_eq!(ticks(&p), vec![1_200_000], "the latest, 5 s old");
        assert_eq!((p.skipped, p.late), (10, 1));

        let (rec, timing) = record(MIN, Missed::latest_within(Duration::from_secs(2)), c);
        let p = plan(&rec, &timing, now).expect("due");
        assert!(ticks(&p).is_empty(), "older than the grace");

        let (rec, timing) = record(MIN, Missed::All { max: 100 }, c);
        let p = plan(&rec, &timing, now).expect("due");
        assert_eq!(
            ticks(&p),
            (0..=10).map(|k| 600_000 + k * 60_000).collect::<Vec<_>>()
        );
        assert_eq!((p.skipped, p.late), (0, 11));

        let (rec, timing) = record(MIN, Missed::All { max: 3 }, c);
        let p = plan(&rec, &timing, now).expect("due");
        assert_eq!(ticks(&p), vec![1_080_000, 1_140_000, 1_200_000]);
        assert_eq!(p.skipped, 8);
    }

    #[test]
    fn cron_ticks_missed_over_a_night() {
        let every = Every::Cron {
            expr: "0 * * * *".into(),
            tz: "Asia/Kolkata".into(),
        };
        // Kolkata is UTC+5:30, so hourly ticks fall at :30 UTC.
        let c = Timestamp::from_millis(1_767_227_400_000); // 2026-01-01T00:30:00Z
        let now = c + Duration::from_secs(10 * 3600 + 7);
        let (rec, timing) = record(every.clone(), Missed::All { max: 50 }, c);
        let p = plan(&rec, &timing, now).expect("due");
        assert_eq!(p.fire.ticks.len(), 11);
        assert_eq!(p.fire.ticks[10].at, c + Duration::from_secs(36_000));
        assert_eq!(p.fire.next_fire, Some(c + Duration::from_secs(39_600)));
        let (rec, timing) = record(every, Missed::default(), c);
        let p = plan(&rec, &timing, now).expect("due");
        assert_eq!(
            ticks(&p),
            vec![(c + Duration::from_secs(36_000)).as_millis()]
        );
        assert_eq!(p.skipped, 10);
    }

    #[test]
    fn run_limit_and_end_stop_the_schedule() {
        let c = Timestamp::from_millis(600_000);
        let (mut rec, timing) = record(MIN, Missed::All { max: 10 }, c);
        rec.def.max_runs = Some(5);
        rec.runs = 3;
        let p = plan(&rec, &timing, c + Duration::from_secs(300)).expect("due");
        assert_eq!(ticks(&p), vec![840_000, 900_000], "two runs were left");
        assert_eq!(p.fire.next_fire, None);

        let (mut rec, timing) = record(MIN, Missed::All { max: 10 }, c);
        rec.def.end_at = Some(c + Duration::from_secs(90));
        let p = plan(&rec, &timing, c + Duration::from_secs(300)).expect("due");
        assert_eq!(ticks(&p), vec![600_000, 660_000]);
        assert_eq!(p.fire.next_fire, None);
    }

    #[test]
    fn paused_or_ended_schedules_are_not_due() {
        let c = Timestamp::from_millis(600_000);
        let (mut rec, timing) = record(MIN, Missed::default(), c);
        rec.paused = true;
        assert!(plan(&rec, &timing, c).is_none());
        rec.paused = false;
        rec.next_fire = None;
        assert!(plan(&rec, &timing, c).is_none());
    }
}
