//! Cases about schedules: upsert, the atomic fire (once per tick, whoever fires), overlap,
//! pause and resume, the due list.

use std::sync::Arc;

use crate::backend::Backend;
use crate::clock::Timestamp;
use crate::error::BackendError;
use crate::record::JobState;
use crate::schedule::{
    tick_key, Every, FireOutcome, FiredTick, Missed, Overlap, Resumed, ScheduleDef, ScheduleFire,
    ScheduleRecord, Upserted,
};

use super::support::{done, env, join, secs, Env};
use super::BackendFactory;

const Q: &str = "sched";

/// A schedule every minute in queue `sched`, firing job `tick`.
fn def(id: &str) -> ScheduleDef {
    ScheduleDef {
        id: id.to_owned(),
        every: Every::Interval { ms: 60_000 },
        job: "tick".into(),
        queue: Q.into(),
        payload: format!(r#"{{"schedule":"{id}"}}"#),
        priority: 3,
        max_attempts: 2,
        start_at: None,
        end_at: None,
        max_runs: None,
        missed: Missed::default(),
        overlap: Overlap::Allow,
        group: None,
    }
}

impl Env {
    async fn upsert(&self, d: &ScheduleDef, next: Option<Timestamp>) -> Upserted {
        self.b
            .upsert_schedule(d, next)
            .await
            .unwrap_or_else(|e| panic!("upsert_schedule {:?}: backend error: {e:?}", d.id))
    }

    async fn sched(&self, id: &str) -> ScheduleRecord {
        self.b
            .schedule(id)
            .await
            .unwrap_or_else(|e| panic!("schedule {id:?}: backend error: {e:?}"))
            .unwrap_or_else(|| panic!("schedule {id:?}: should exist"))
    }

    async fn fire(&self, fires: Vec<ScheduleFire>) -> Vec<FireOutcome> {
        let n = fires.len();
        let out = self
            .b
            .fire_schedules(fires)
            .await
            .unwrap_or_else(|e| panic!("fire_schedules: backend error: {e:?}"));
        assert_eq!(out.len(), n, "fire_schedules: one outcome per fire");
        out
    }
}

/// A fire of `rec`'s cursor tick, moving the cursor one minute on.
fn fire_of(rec: &ScheduleRecord) -> ScheduleFire {
    let at = rec.next_fire.expect("the schedule has a cursor");
    ScheduleFire {
        id: rec.def.id.clone(),
        revision: rec.revision,
        cursor: at,
        next_fire: Some(at + secs(60)),
        ticks: vec![FiredTick {
            at,
            job: rec.def.job_at(at),
        }],
        skip_if_live: rec.def.overlap == Overlap::Skip,
    }
}

fn fired(o: &FireOutcome, what: &str) -> Vec<crate::record::Enqueued> {
    match o {
        FireOutcome::Fired(jobs) => jobs.clone(),
        other => panic!("{what}: expected Fired, got {other:?}"),
    }
}

/// Upserting the same definition changes nothing (not even the cursor); a changed one
/// replaces the definition and cursor and bumps the revision; an invalid one is refused.
pub async fn schedule_upsert_is_idempotent<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let first = t.now() + secs(60);
    assert_eq!(t.upsert(&def("a"), Some(first)).await, Upserted::Created);
    let rec = t.sched("a").await;
    assert_eq!(rec.def, def("a"), "the definition reads back as stored");
    assert_eq!(
        (rec.revision, rec.paused, rec.next_fire, rec.runs),
        (1, false, Some(first), 0)
    );
    assert_eq!((rec.last_fire, rec.last_job), (None, None));

    // A second process upserting the same definition later computes a later cursor: kept.
    t.advance(secs(5));
    assert_eq!(
        t.upsert(&def("a"), Some(t.now() + secs(60))).await,
        Upserted::Unchanged
    );
    assert_eq!(
        t.sched("a").await,
        rec,
        "an unchanged upsert changes nothing"
    );

    let mut changed = def("a");
    changed.every = Every::Cron {
        expr: "*/5 * * * *".into(),
        tz: "Europe/Berlin".into(),
    };
    let cursor = t.now() + secs(300);
    assert_eq!(t.upsert(&changed, Some(cursor)).await, Upserted::Replaced);
    let rec = t.sched("a").await;
    assert_eq!(
        (rec.def.clone(), rec.revision, rec.next_fire),
        (changed, 2, Some(cursor))
    );

    let mut bad = def("b");
    bad.queue = "no spaces".into();
    let e = t.b.upsert_schedule(&bad, None).await;
    assert!(
        matches!(e, Err(BackendError::InvalidInput(_))),
        "a bad queue is InvalidInput, got {e:?}"
    );
    let mut bad = def("b");
    bad.every = Every::Cron {
        expr: "not cron".into(),
        tz: "UTC".into(),
    };
    let e = t.b.upsert_schedule(&bad, None).await;
    assert!(
        matches!(e, Err(BackendError::InvalidInput(_))),
        "a bad expression is InvalidInput, got {e:?}"
    );
    let all =
        t.b.schedules()
            .await
            .unwrap_or_else(|e| panic!("schedules: backend error: {e:?}"));
    assert_eq!(
        all.iter().map(|r| r.def.id.as_str()).collect::<Vec<_>>(),
        ["a"],
        "nothing stored for refused upserts"
    );
}

/// A fire pushes the tick's job with the tick's unique key and moves the cursor; the same
/// fire again is stale; of many workers racing on one tick, exactly one fires it.
pub async fn schedule_fires_each_tick_once<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.upsert(&def("m"), Some(t.now() + secs(60))).await;
    t.advance(secs(60));
    let rec = t.sched("m").await;
    let tick = rec.next_fire.expect("a cursor");
    let out = t.fire(vec![fire_of(&rec)]).await;
    let jobs = fired(&out[0], "first fire");
    assert_eq!(jobs.len(), 1);
    assert!(!jobs[0].existing);
    let job = t.get(jobs[0].id).await;
    assert_eq!(job.state, JobState::Ready, "a tick at now is ready");
    assert_eq!(
        (job.name.as_str(), job.queue.as_str(), job.priority),
        ("tick", Q, 3)
    );
    assert_eq!(job.max_attempts, 2);
    assert_eq!(job.payload, r#"{"schedule":"m"}"#);
    assert_eq!(
        job.unique_key.as_deref(),
        Some(tick_key("m", tick).as_str())
    );
    let after = t.sched("m").await;
    assert_eq!(after.next_fire, Some(tick + secs(60)));
    assert_eq!(
        (after.runs, after.last_fire, after.last_job),
        (1, Some(tick), Some(jobs[0].id))
    );

    let again = t.fire(vec![fire_of(&rec)]).await;
    assert_eq!(again, vec![FireOutcome::Stale], "the cursor has moved");
    assert_eq!(t.counts_of(Q).await.ready, 1, "no second job");

    // Eight workers race on the next tick.
    t.advance(secs(60));
    let rec = t.sched("m").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let b: Arc<dyn Backend> = t.b.clone();
        let f = fire_of(&rec);
        tasks.push(tokio::spawn(async move { b.fire_schedules(vec![f]).await }));
    }
    let mut wins = 0;
    for task in tasks {
        let out = join("racing fire", task)
            .await
            .unwrap_or_else(|e| panic!("racing fire: backend error: {e:?}"));
        match &out[0] {
            FireOutcome::Fired(jobs) if jobs.len() == 1 => wins += 1,
            FireOutcome::Stale => {}
            other => panic!("racing fire: unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1, "exactly one of the racing fires wins");
    assert_eq!(t.counts_of(Q).await.ready, 2);
    assert_eq!(t.sched("m").await.runs, 2);
}

/// A fire planned before the schedule changed, was paused or removed is stale and changes
/// nothing.
pub async fn schedule_fire_is_refused_after_a_change<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.upsert(&def("c"), Some(t.now())).await;
    let rec = t.sched("c").await;

    let mut changed = def("c");
    changed.priority = 9;
    t.upsert(&changed, Some(t.now())).await;
    assert_eq!(
        t.fire(vec![fire_of(&rec)]).await,
        vec![FireOutcome::Stale],
        "planned for the old revision"
    );

    let rec = t.sched("c").await;
    assert!(t
        .b
        .pause_schedule("c")
        .await
        .unwrap_or_else(|e| panic!("pause_schedule: {e:?}")));
    assert_eq!(
        t.fire(vec![fire_of(&rec)]).await,
        vec![FireOutcome::Stale],
        "paused"
    );
    assert!(t
        .b
        .remove_schedule("c")
        .await
        .unwrap_or_else(|e| panic!("remove_schedule: {e:?}")));
    assert!(
        !t.b.remove_schedule("c")
            .await
            .unwrap_or_else(|e| panic!("remove_schedule: {e:?}")),
        "removing twice finds nothing"
    );
    assert_eq!(
        t.fire(vec![fire_of(&rec)]).await,
        vec![FireOutcome::Stale],
        "removed"
    );
    assert!(t
        .b
        .schedule("c")
        .await
        .unwrap_or_else(|e| panic!("schedule: {e:?}"))
        .is_none());
    assert_eq!(t.counts_of(Q).await.ready, 0, "no job from any stale fire");
    assert!(
        !t.b.pause_schedule("nope")
            .await
            .unwrap_or_else(|e| panic!("pause_schedule: {e:?}")),
        "pausing an unknown schedule finds nothing"
    );
}

/// With overlap `skip`, a tick while the last job is still live moves the cursor and
/// pushes nothing; once that job has finished, the next tick fires.
pub async fn schedule_overlap_skip_waits_for_the_last_job<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut d = def("o");
    d.overlap = Overlap::Skip;
    t.upsert(&d, Some(t.now())).await;
    let rec = t.sched("o").await;
    let first = fired(&t.fire(vec![fire_of(&rec)]).await[0], "first tick")[0].id;
    let leased = t.reserve_one(Q, "the first tick's job").await;
    assert_eq!(leased.id(), first);

    t.advance(secs(60));
    let rec = t.sched("o").await;
    assert_eq!(
        t.fire(vec![fire_of(&rec)]).await,
        vec![FireOutcome::Overlapping],
        "the first job is still running"
    );
    let rec2 = t.sched("o").await;
    assert_eq!(
        rec2.next_fire,
        rec.next_fire.map(|n| n + secs(60)),
        "cursor moved"
    );
    assert_eq!(
        (rec2.runs, rec2.last_job),
        (1, Some(first)),
        "nothing fired"
    );
    assert_eq!(t.counts_of(Q).await.ready, 0);

    t.finish_ok(leased.lease, done(), "finish the first job")
        .await;
    t.advance(secs(60));
    let out = t.fire(vec![fire_of(&rec2)]).await;
    let second = fired(&out[0], "after the first job finished");
    assert_eq!(second.len(), 1);
    assert_eq!(t.sched("o").await.runs, 2);
}

/// Several missed ticks fire in one step, oldest first; runs and the last fire count them.
pub async fn schedule_fires_missed_ticks_in_order<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let start = t.now();
    t.upsert(&def("all"), Some(start)).await;
    t.advance(secs(150));
    let rec = t.sched("all").await;
    let ticks: Vec<Timestamp> = (0..3).map(|k| start + secs(60 * k)).collect();
    let fire = ScheduleFire {
        next_fire: Some(start + secs(180)),
        ticks: ticks
            .iter()
            .map(|at| FiredTick {
                at: *at,
                job: rec.def.job_at(*at),
            })
            .collect(),
        ..fire_of(&rec)
    };
    let jobs = fired(&t.fire(vec![fire]).await[0], "three ticks");
    assert_eq!(jobs.len(), 3);
    for (job, at) in jobs.iter().zip(&ticks) {
        let r = t.get(job.id).await;
        assert_eq!(r.unique_key, Some(tick_key("all", *at)));
        assert_eq!(r.run_at, *at);
    }
    assert!(
        jobs[0].id < jobs[1].id && jobs[1].id < jobs[2].id,
        "oldest first"
    );
    let rec = t.sched("all").await;
    assert_eq!(
        (rec.runs, rec.last_fire, rec.last_job, rec.next_fire),
        (3, Some(ticks[2]), Some(jobs[2].id), Some(start + secs(180)))
    );
    // A fire that only skips missed ticks moves the cursor alone; one that ends the schedule
    // leaves it without a cursor.
    let skip_only = ScheduleFire {
        ticks: Vec::new(),
        next_fire: None,
        ..fire_of(&rec)
    };
    assert_eq!(
        t.fire(vec![skip_only]).await,
        vec![FireOutcome::Fired(Vec::new())]
    );
    let rec = t.sched("all").await;
    assert_eq!((rec.next_fire, rec.runs), (None, 3));
}

/// The due list holds unpaused schedules with a cursor at or before the time, earliest
/// first, up to the limit.
pub async fn schedule_due_list<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let now = t.now();
    t.upsert(&def("late"), Some(now + secs(30))).await;
    t.upsert(&def("early"), Some(now + secs(10))).await;
    t.upsert(&def("tie"), Some(now + secs(10))).await;
    t.upsert(&def("far"), Some(now + secs(3600))).await;
    t.upsert(&def("ended"), None).await;
    t.upsert(&def("paused"), Some(now)).await;
    assert!(t
        .b
        .pause_schedule("paused")
        .await
        .unwrap_or_else(|e| panic!("pause: {e:?}")));
    let due = |before, limit| {
        let b = t.b.clone();
        async move {
            b.due_schedules(before, limit)
                .await
                .unwrap_or_else(|e| panic!("due_schedules: backend error: {e:?}"))
                .into_iter()
                .map(|r| r.def.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(now + secs(60), 10).await, ["early", "tie", "late"]);
    assert_eq!(
        due(now + secs(10), 10).await,
        ["early", "tie"],
        "at the time is due"
    );
    assert_eq!(
        due(now + secs(60), 2).await,
        ["early", "tie"],
        "up to the limit"
    );
    assert!(due(now + secs(5), 10).await.is_empty());
    let all =
        t.b.schedules()
            .await
            .unwrap_or_else(|e| panic!("schedules: backend error: {e:?}"));
    assert_eq!(
        all.iter().map(|r| r.def.id.as_str()).collect::<Vec<_>>(),
        ["early", "ended", "far", "late", "paused", "tie"],
        "every schedule, by id"
    );
}

/// Resume takes the cursor it is given (ticks due while paused do not fire), only at the
/// revision it was read at.
pub async fn schedule_pause_and_resume<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    t.upsert(&def("p"), Some(t.now())).await;
    assert!(t
        .b
        .pause_schedule("p")
        .await
        .unwrap_or_else(|e| panic!("pause: {e:?}")));
    assert!(t.sched("p").await.paused);
    t.advance(secs(600));
    let resume = |rev, next| {
        let b = t.b.clone();
        async move {
            b.resume_schedule("p", rev, next)
                .await
                .unwrap_or_else(|e| panic!("resume_schedule: backend error: {e:?}"))
        }
    };
    let next = Some(t.now() + secs(60));
    assert_eq!(resume(7, next).await, Resumed::Conflict, "another revision");
    assert!(t.sched("p").await.paused, "a conflict changes nothing");
    assert_eq!(resume(1, next).await, Resumed::Resumed);
    let rec = t.sched("p").await;
    assert_eq!((rec.paused, rec.next_fire), (false, next));
    // Resuming a schedule that runs leaves its cursor alone.
    assert_eq!(resume(1, Some(t.now())).await, Resumed::Resumed);
    assert_eq!(t.sched("p").await.next_fire, next);
    let unknown =
        t.b.resume_schedule("nope", 1, None)
            .await
            .unwrap_or_else(|e| panic!("resume_schedule: backend error: {e:?}"));
    assert_eq!(unknown, Resumed::NotFound);
}

/// A schedule with a group reads back with it, and each tick's job carries the group, so a
/// per-user schedule (a nightly statement fetch) takes its turn with that user's other jobs.
pub async fn schedule_jobs_carry_its_group<F: BackendFactory + ?Sized>(factory: &F) {
    let t = env(factory).await;
    let mut d = def("per-user");
    d.group = Some("user-7 · ü".into());
    t.upsert(&d, Some(t.now() + secs(60))).await;
    let rec = t.sched("per-user").await;
    assert_eq!(rec.def, d, "the group is stored with the definition");
    t.advance(secs(60));
    let out = t.fire(vec![fire_of(&rec)]).await;
    let jobs = fired(&out[0], "the fire");
    assert_eq!(
        t.get(jobs[0].id).await.group.as_deref(),
        Some("user-7 · ü"),
        "the tick's job carries the schedule's group"
    );
    assert_eq!(
        t.get(jobs[0].id).await.state,
        JobState::Ready,
        "and is ready at its tick"
    );
}
