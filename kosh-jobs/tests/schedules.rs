//! Schedules run by workers, on a manual clock: each tick is enqueued once however many
//! workers fire, missed ticks follow their policy after downtime, overlap `skip` holds ticks
//! back while a long job runs, and an upsert replaces a pending tick.

use std::time::Duration;

use kosh_jobs::memory::MemoryBackend;
use kosh_jobs::schedule::{Missed, Overlap, Schedule, ScheduledTick};
use kosh_jobs::{job, Client, Clock, JobContext, JobError, ManualClock, Timestamp, Worker};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What the handler reports: the tick it ran for.
#[derive(Clone)]
struct Ticks {
    tx: mpsc::UnboundedSender<ScheduledTick>,
    /// Held by the handler until the test sends (a long job), if set.
    hold: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

#[derive(Serialize, Deserialize, Default)]
struct Tick {
    n: u32,
}

#[job(queue = "periodic", max_attempts = 1)]
async fn tick(_job: Tick, ctx: JobContext<Ticks>) -> Result<(), JobError> {
    let t = ctx.scheduled_tick().await?.expect("fired by a schedule");
    let _ = ctx.state().tx.send(t);
    if let Some(hold) = &ctx.state().hold {
        let _ = hold.acquire().await.map(|p| p.forget());
    }
    Ok(())
}

const MINUTE: Duration = Duration::from_secs(60);
/// A real-time guard for what should happen at once.
const GUARD: Duration = Duration::from_secs(20);

struct Setup {
    backend: MemoryBackend,
    client: Client,
    time: ManualClock,
    rx: mpsc::UnboundedReceiver<ScheduledTick>,
    state: Ticks,
}

fn setup(hold: Option<std::sync::Arc<tokio::sync::Semaphore>>) -> Setup {
    setup_at(Clock::manual(), hold)
}

fn setup_at(
    (clock, time): (Clock, ManualClock),
    hold: Option<std::sync::Arc<tokio::sync::Semaphore>>,
) -> Setup {
    let backend = MemoryBackend::with_clock(clock);
    let (tx, rx) = mpsc::unbounded_channel();
    Setup {
        client: Client::new(backend.clone()),
        backend,
        time,
        rx,
        state: Ticks { tx, hold },
    }
}

impl Setup {
    fn worker(&self) -> kosh_jobs::worker::WorkerHandle {
        Worker::builder(self.backend.clone())
            .state(self.state.clone())
            .register::<Tick>()
            // The manual clock jumps by minutes: leases must outlast the jumps.
            .lease(Duration::from_secs(3600))
            .build()
            .expect("a valid worker")
            .spawn()
    }

    async fn next_tick(&mut self) -> ScheduledTick {
        tokio::time::timeout(GUARD, self.rx.recv())
            .await
            .expect("a tick runs within the guard")
            .expect("the channel is open")
    }

    /// Moves the clock on in steps, so sleepers see each step.
    fn advance(&self, d: Duration) {
        self.time.advance(d);
    }

    async fn completed(&self) -> u64 {
        let counts = self.client.counts().await.expect("counts");
        counts
            .iter()
            .filter(|c| c.queue == "periodic")
            .map(|c| c.completed + c.ready + c.running + c.scheduled)
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_enqueue_each_tick_once() {
    let mut s = setup(None);
    let start = s.time.now();
    s.client
        .upsert_schedule(
            Schedule::every("every-minute", MINUTE).unwrap(),
            Tick::default(),
        )
        .await
        .unwrap();
    let workers = [s.worker(), s.worker(), s.worker()];
    let mut seen = Vec::new();
    for k in 1..=5u64 {
        s.advance(MINUTE);
        let t = s.next_tick().await;
        assert_eq!(t.schedule, "every-minute");
        assert!(!t.late, "fired at its time");
        seen.push(t.at);
        assert_eq!(t.at, start + MINUTE * k as u32);
    }
    for w in workers {
        w.shutdown().await.unwrap();
    }
    assert!(s.rx.try_recv().is_err(), "no tick ran twice");
    assert_eq!(s.completed().await, 5, "five jobs in all");
    let rec = s.client.schedule("every-minute").await.unwrap().unwrap();
    assert_eq!(rec.runs, 5);
    assert_eq!(rec.next_fire, Some(start + MINUTE * 6));
}

/// Ten ticks pass with no worker running; what fires when one starts depends on the policy.
async fn after_downtime(missed: Missed) -> (Vec<ScheduledTick>, Timestamp) {
    let mut s = setup(None);
    let start = s.time.now();
    s.client
        .upsert_schedule(
            Schedule::every("nightly", MINUTE).unwrap().missed(missed),
            Tick::default(),
        )
        .await
        .unwrap();
    s.advance(MINUTE * 10 + Duration::from_secs(5));
    let w = s.worker();
    // The worker catches up in one step: the cursor moves past every missed tick.
    wait_cursor(&s.client, "nightly", start + MINUTE * 11).await;
    wait_idle(&s.client).await;
    let mut fired = Vec::new();
    // Everything the catch-up enqueued has run: the next tick comes last, on time.
    s.advance(MINUTE - Duration::from_secs(5));
    loop {
        let t = s.next_tick().await;
        let on_time = t.at == start + MINUTE * 11;
        fired.push(t);
        if on_time {
            break;
        }
    }
    w.shutdown().await.unwrap();
    (fired, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downtime_under_each_missed_policy() {
    let at = |start: Timestamp, k: u32| start + MINUTE * k;

    let (fired, start) = after_downtime(Missed::default()).await;
    let ticks: Vec<_> = fired.iter().map(|t| (t.at, t.late)).collect();
    assert_eq!(ticks, vec![(at(start, 10), true), (at(start, 11), false)]);

    let (fired, start) = after_downtime(Missed::latest_within(Duration::from_secs(2))).await;
    let ticks: Vec<_> = fired.iter().map(|t| t.at).collect();
    assert_eq!(
        ticks,
        vec![at(start, 11)],
        "the latest missed tick was too old"
    );

    let (fired, start) = after_downtime(Missed::All { max: 100 }).await;
    let mut ticks: Vec<_> = fired.iter().map(|t| t.at).collect();
    ticks.sort();
    assert_eq!(ticks, (1..=11).map(|k| at(start, k)).collect::<Vec<_>>());
    assert!(fired.iter().filter(|t| t.late).count() == 10);

    let (fired, start) = after_downtime(Missed::All { max: 3 }).await;
    let mut ticks: Vec<_> = fired.iter().map(|t| t.at).collect();
    ticks.sort();
    assert_eq!(ticks, (8..=11).map(|k| at(start, k)).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_holds_ticks_while_a_long_job_runs() {
    let hold = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut s = setup(Some(hold.clone()));
    let start = s.time.now();
    s.client
        .upsert_schedule(
            Schedule::every("import", MINUTE)
                .unwrap()
                .overlap(Overlap::Skip),
            Tick::default(),
        )
        .await
        .unwrap();
    let w = s.worker();
    s.advance(MINUTE);
    assert_eq!(s.next_tick().await.at, start + MINUTE);
    // Three ticks pass while the first job runs: none is enqueued. Wait for each to be
    // handled (the cursor moves) before the next.
    for k in 2..=4u32 {
        s.advance(MINUTE);
        wait_cursor(&s.client, "import", start + MINUTE * (k + 1)).await;
    }
    assert_eq!(s.completed().await, 1, "only the running job");
    hold.add_permits(1);
    wait_idle(&s.client).await;
    s.advance(MINUTE);
    assert_eq!(s.next_tick().await.at, start + MINUTE * 5);
    hold.add_permits(10);
    w.shutdown().await.unwrap();
    let rec = s.client.schedule("import").await.unwrap().unwrap();
    assert_eq!(rec.runs, 2);
}

/// Waits until no job of the queue is waiting or running (a busy wait on the store, yielding,
/// with a real-time guard).
async fn wait_idle(client: &Client) {
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let counts = client.counts().await.unwrap();
        let busy: u64 = counts
            .iter()
            .map(|c| c.scheduled + c.ready + c.running)
            .sum();
        if busy == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the jobs should finish: {counts:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// Waits until the schedule's cursor reads `t` (the runner moved it): a busy wait on the
/// store, yielding, with a real-time guard (the clock is manual).
async fn wait_cursor(client: &Client, id: &str, t: Timestamp) {
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let rec = client.schedule(id).await.unwrap().unwrap();
        if rec.next_fire == Some(t) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cursor should reach {t:?}, it is at {:?}",
            rec.next_fire
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_replaces_the_pending_tick() {
    let mut s = setup(None);
    let start = s.time.now();
    s.client
        .upsert_schedule(Schedule::every("report", MINUTE).unwrap(), Tick::default())
        .await
        .unwrap();
    let w = s.worker();
    s.advance(MINUTE);
    assert_eq!(s.next_tick().await.at, start + MINUTE);
    // The worker holds the tick at start + 2 min. The schedule changes to every 5 minutes
    // before it: that tick must not fire, the new one must.
    s.client
        .upsert_schedule(
            Schedule::every("report", MINUTE * 5).unwrap(),
            Tick { n: 2 },
        )
        .await
        .unwrap();
    let replaced_at = s.time.now();
    s.advance(MINUTE);
    s.advance(MINUTE * 4);
    let t = s.next_tick().await;
    assert_eq!(
        t.at,
        replaced_at + MINUTE * 5,
        "the new schedule's first tick"
    );
    w.shutdown().await.unwrap();
    assert_eq!(s.completed().await, 2, "the old pending tick never fired");
}

#[derive(Serialize, Deserialize, Default)]
struct Housekeeping {
    keep_days: u32,
}

#[job(
    queue = "periodic",
    cron = "*/5 * * * *",
    tz = "Asia/Kolkata",
    max_attempts = 2
)]
async fn housekeeping(job: Housekeeping, ctx: JobContext<Ticks>) -> Result<(), JobError> {
    assert_eq!(job.keep_days, 0, "the payload's Default");
    let t = ctx.scheduled_tick().await?.expect("fired by a schedule");
    let _ = ctx.state().tx.send(t);
    Ok(())
}

/// A schedule declared on the job type is stored by the worker that registers it, under the
/// job's name, and fires at its cron ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_schedule_is_stored_and_fires() {
    let mut s = setup(None);
    let w = Worker::builder(s.backend.clone())
        .state(s.state.clone())
        .register::<Housekeeping>()
        .lease(Duration::from_secs(3600))
        .build()
        .expect("a valid worker")
        .spawn();
    let deadline = std::time::Instant::now() + GUARD;
    let rec = loop {
        if let Some(rec) = s.client.schedule("housekeeping").await.unwrap() {
            break rec;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker stores the schedule"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(rec.def.queue, "periodic");
    assert_eq!(rec.def.max_attempts, 2);
    assert_eq!(rec.def.payload, r#"{"keep_days":0}"#);
    let next = rec.next_fire.expect("a first tick");
    // Kolkata is UTC+5:30: a five-minute boundary there is one in UTC too.
    assert_eq!(next.as_millis() % 300_000, 0);
    s.advance(next.saturating_duration_since(s.time.now()));
    let t = s.next_tick().await;
    assert_eq!((t.schedule.as_str(), t.at), ("housekeeping", next));
    w.shutdown().await.unwrap();
}

/// Runs `expr` in `tz` from `start` (RFC 3339) and checks the ticks fired are exactly
/// `expected`, moving the clock to each in turn.
async fn fires_at(expr: &str, tz: &str, start: &str, expected: &[&str]) {
    let ms = |s: &str| {
        Timestamp::from_millis(
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("an RFC 3339 time")
                .timestamp_millis(),
        )
    };
    let mut s = setup_at(Clock::manual_at(ms(start)), None);
    s.client
        .upsert_schedule(
            Schedule::cron("wall-clock", expr)
                .unwrap()
                .time_zone(tz)
                .unwrap(),
            Tick::default(),
        )
        .await
        .unwrap();
    let w = s.worker();
    for want in expected {
        let want = ms(want);
        s.advance(want.saturating_duration_since(s.time.now()));
        let t = s.next_tick().await;
        assert_eq!(t.at, want, "{expr} in {tz}");
        assert!(!t.late);
        // Let the job end before the clock jumps a day (past its lease).
        wait_idle(&s.client).await;
    }
    w.shutdown().await.unwrap();
    assert!(s.rx.try_recv().is_err(), "no other tick ran");
    assert_eq!(s.completed().await, expected.len() as u64);
}

/// Daylight saving in Europe/Berlin: 02:30 does not exist on 2026-03-29 (it runs at 03:00,
/// the first valid time after the gap) and happens twice on 2026-10-25 (it runs once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_times_across_daylight_saving_changes() {
    fires_at(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27T12:00:00Z",
        &[
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 03:00 CEST: the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ],
    )
    .await;
    fires_at(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-23T12:00:00Z",
        &[
            "2026-10-24T00:30:00Z", // 02:30 CEST
            "2026-10-25T00:30:00Z", // 02:30 CEST, the first of two
            "2026-10-26T01:30:00Z", // 02:30 CET
        ],
    )
    .await;
    // A zone without daylight saving, half an hour off UTC.
    fires_at(
        "0 3 * * *",
        "Asia/Kolkata",
        "2026-03-27T12:00:00Z",
        &[
            "2026-03-27T21:30:00Z",
            "2026-03-28T21:30:00Z",
            "2026-03-29T21:30:00Z",
        ],
    )
    .await;
}
