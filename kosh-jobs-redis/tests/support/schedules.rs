//! Schedule cases that depend on how Redis stores schedules (one queue's slot each, a
//! prefix-wide index), run on a single server (`tests/schedules.rs`) and on a cluster
//! (`tests/cluster.rs`).

use std::time::Duration;

use kosh_jobs_core::schedule::{
    Every, FireOutcome, FiredTick, Missed, Overlap, ScheduleDef, ScheduleFire, ScheduleRecord,
    Upserted,
};
use kosh_jobs_core::{Backend, Enqueued, Timestamp};
use kosh_jobs_redis::RedisBackend;

/// Queues whose slots are on different masters of the test cluster.
pub const QUEUES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// A schedule every minute whose jobs go to `queue`.
pub fn def(id: &str, queue: &str) -> ScheduleDef {
    ScheduleDef {
        id: id.to_owned(),
        every: Every::Interval { ms: 60_000 },
        job: "tick".into(),
        queue: queue.into(),
        payload: "{}".into(),
        priority: 0,
        max_attempts: 1,
        start_at: None,
        end_at: None,
        max_runs: None,
        missed: Missed::default(),
        overlap: Overlap::Allow,
        group: None,
    }
}

/// A fire of `rec`'s cursor tick that moves the cursor a minute on.
pub fn fire_of(rec: &ScheduleRecord) -> ScheduleFire {
    let at = rec.next_fire.expect("a cursor");
    ScheduleFire {
        id: rec.def.id.clone(),
        revision: rec.revision,
        cursor: at,
        next_fire: Some(at + Duration::from_secs(60)),
        ticks: vec![FiredTick {
            at,
            job: rec.def.job_at(at),
        }],
        skip_if_live: false,
    }
}

async fn sched(b: &RedisBackend, id: &str) -> ScheduleRecord {
    b.schedule(id)
        .await
        .expect("schedule")
        .unwrap_or_else(|| panic!("schedule {id:?} should exist"))
}

fn fired(o: &FireOutcome) -> Vec<Enqueued> {
    match o {
        FireOutcome::Fired(jobs) => jobs.clone(),
        other => panic!("expected Fired, got {other:?}"),
    }
}

async fn queue_of_job(b: &RedisBackend, e: &Enqueued) -> String {
    b.get(e.id)
        .await
        .expect("get")
        .expect("the job exists")
        .queue
}

/// Jobs of `queue` that are scheduled, ready or running.
async fn live_in(b: &RedisBackend, queue: &str) -> u64 {
    b.counts()
        .await
        .expect("counts")
        .iter()
        .find(|c| c.queue == queue)
        .map_or(0, |c| c.live())
}

/// An upsert that changes a schedule's queue moves it to the new queue's slot: runs, last
/// job and paused state are kept, a fire planned before the move is stale, the old queue
/// neither lists nor fires it, and it can move back. `url` is the server `b` uses.
pub async fn upsert_moves_a_schedule_to_its_new_queue(b: &RedisBackend, url: &str) {
    let now = b.clock().now();
    assert_eq!(
        b.upsert_schedule(&def("mover", "alpha"), Some(now))
            .await
            .expect("upsert"),
        Upserted::Created
    );
    let before = sched(b, "mover").await;
    let first = fired(
        &b.fire_schedules(vec![fire_of(&before)])
            .await
            .expect("fire")[0],
    );
    assert_eq!(queue_of_job(b, &first[0]).await, "alpha");
    let in_alpha = sched(b, "mover").await;

    let cursor = now + Duration::from_secs(600);
    assert_eq!(
        b.upsert_schedule(&def("mover", "beta"), Some(cursor))
            .await
            .expect("upsert"),
        Upserted::Replaced
    );
    let moved = sched(b, "mover").await;
    assert_eq!(moved.def, def("mover", "beta"));
    assert_eq!(
        (moved.revision, moved.paused, moved.next_fire),
        (2, false, Some(cursor))
    );
    assert_eq!(
        (moved.runs, moved.last_fire, moved.last_job),
        (1, before.next_fire, Some(first[0].id)),
        "runs and the last fire move with it"
    );
    assert_eq!(
        b.upsert_schedule(&def("mover", "beta"), Some(now))
            .await
            .expect("upsert"),
        Upserted::Unchanged,
        "in its new queue, the same definition is unchanged"
    );
    let all = b.schedules().await.expect("schedules");
    assert_eq!(all, vec![moved.clone()], "listed once, in its new queue");

    // A fire planned in the old queue from the old revision finds nothing.
    assert_eq!(
        b.fire_schedules(vec![fire_of(&in_alpha)])
            .await
            .expect("fire"),
        vec![FireOutcome::Stale]
    );
    // A fire without ticks (skipping missed ticks) finds the schedule in its new queue, from
    // this process and from another one that never read it.
    let skip = ScheduleFire {
        ticks: Vec::new(),
        next_fire: Some(cursor + Duration::from_secs(60)),
        ..fire_of(&moved)
    };
    let other = RedisBackend::connect_with(
        kosh_jobs_redis::RedisOptions::builder(url)
            .prefix(b.prefix())
            .clock(b.clock().clone())
            .build()
            .expect("options"),
    )
    .await
    .expect("connect");
    assert_eq!(
        other
            .fire_schedules(vec![skip.clone()])
            .await
            .expect("fire"),
        vec![FireOutcome::Fired(Vec::new())]
    );
    assert_eq!(
        b.fire_schedules(vec![skip]).await.expect("fire"),
        vec![FireOutcome::Stale],
        "fired once"
    );
    let moved = sched(b, "mover").await;
    let second = fired(&b.fire_schedules(vec![fire_of(&moved)]).await.expect("fire")[0]);
    assert_eq!(queue_of_job(b, &second[0]).await, "beta");
    assert_eq!(
        (live_in(b, "alpha").await, live_in(b, "beta").await),
        (1, 1)
    );

    // Paused, it moves paused; and it can go back to its first queue.
    assert!(b.pause_schedule("mover").await.expect("pause"));
    let mut back = def("mover", "alpha");
    back.priority = 5;
    assert_eq!(
        b.upsert_schedule(&back, Some(now)).await.expect("upsert"),
        Upserted::Replaced
    );
    let rec = sched(b, "mover").await;
    assert_eq!(
        (rec.def.queue.as_str(), rec.revision, rec.paused, rec.runs),
        ("alpha", 3, true, 2)
    );
    assert_eq!(rec.last_job, Some(second[0].id));
    assert!(
        b.due_schedules(now + Duration::from_secs(3600), 10)
            .await
            .expect("due")
            .is_empty(),
        "paused: not due in any queue"
    );
    assert!(b.remove_schedule("mover").await.expect("remove"));
    assert!(b.schedules().await.expect("schedules").is_empty());
    assert!(b.schedule("mover").await.expect("schedule").is_none());
}

/// Schedules spread over queues (slots, masters) are due earliest first, ties by id, up to
/// the limit, whatever queue holds them; one fire call fires a batch across queues.
pub async fn due_schedules_merge_queues(b: &RedisBackend) {
    let now = b.clock().now();
    let mut expected: Vec<(Timestamp, String)> = Vec::new();
    for i in 0..20u64 {
        let id = format!("s{:02}", 19 - i);
        let queue = QUEUES[(i % 4) as usize];
        // Three schedules share each time, in different queues.
        let next = now + Duration::from_secs(10 * (i / 3));
        b.upsert_schedule(&def(&id, queue), Some(next))
            .await
            .expect("upsert");
        expected.push((next, id));
    }
    for (id, next) in [("paused", Some(now)), ("ended", None)] {
        b.upsert_schedule(&def(id, "beta"), next)
            .await
            .expect("upsert");
    }
    assert!(b.pause_schedule("paused").await.expect("pause"));
    expected.sort();
    let ids = |recs: Vec<ScheduleRecord>| recs.into_iter().map(|r| r.def.id).collect::<Vec<_>>();
    let want = |before: Timestamp, limit: usize| {
        expected
            .iter()
            .filter(|(t, _)| *t <= before)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    };
    let end = now + Duration::from_secs(3600);
    for (before, limit) in [
        (end, 100),
        (end, 20),
        (end, 7),
        (end, 1),
        (now + Duration::from_secs(30), 100),
        (now + Duration::from_secs(30), 5),
        (now, 100),
        (end, 0),
    ] {
        let got = ids(b.due_schedules(before, limit).await.expect("due"));
        assert_eq!(
            got,
            want(before, limit),
            "due before +{:?}, limit {limit}",
            before.saturating_duration_since(now)
        );
    }
    let all = ids(b.schedules().await.expect("schedules"));
    let mut every: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
    every.extend(["paused".to_owned(), "ended".to_owned()]);
    every.sort();
    assert_eq!(all, every, "every schedule, by id");

    // One call fires the due ones across queues, with a stale fire among them.
    let due = b
        .due_schedules(now + Duration::from_secs(20), 100)
        .await
        .expect("due");
    assert_eq!(due.len(), 9);
    let mut fires: Vec<ScheduleFire> = due.iter().map(fire_of).collect();
    let mut stale = fire_of(&due[0]);
    stale.revision += 1;
    fires.insert(3, stale);
    let out = b.fire_schedules(fires).await.expect("fire");
    assert_eq!(out[3], FireOutcome::Stale);
    let mut ids_seen = Vec::new();
    for (rec, o) in due.iter().zip(out.iter().take(3).chain(out.iter().skip(4))) {
        let jobs = fired(o);
        assert_eq!(jobs.len(), 1);
        assert_eq!(queue_of_job(b, &jobs[0]).await, rec.def.queue);
        ids_seen.push(jobs[0].id);
        let after = sched(b, &rec.def.id).await;
        assert_eq!((after.runs, after.last_job), (1, Some(jobs[0].id)));
    }
    ids_seen.sort();
    ids_seen.dedup();
    assert_eq!(ids_seen.len(), 9, "one job per fire");
    let total: u64 = {
        let mut n = 0;
        for q in QUEUES {
            n += live_in(b, q).await;
        }
        n
    };
    assert_eq!(total, 9);
    // Their cursors moved on: fewer are due now.
    assert_eq!(
        ids(b
            .due_schedules(now + Duration::from_secs(20), 100)
            .await
            .expect("due")),
        Vec::<String>::new()
    );
}
