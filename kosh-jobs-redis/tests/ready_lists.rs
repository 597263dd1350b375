//! Ready jobs in two places (layout 8 on): on a single server, a job pushed ready without a
//! unique key or group waits in a list per priority, every other ready job (scheduled, run
//! before, retried, with a unique key) in the queue's sorted set. The two must read as one
//! queue: leased by priority then id, listed and searched by id, counted, cancelled.
//!
//! The main check is differential: one random run of pushes, reserves, finishes, cancels and
//! clock steps on Redis and on the memory backend (the reference of the backend contract),
//! both on one manual clock, comparing what each returns at every step.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kosh_jobs_core::admin::{JobFilter, Order, SearchQuery};
use kosh_jobs_core::memory::MemoryBackend;
use kosh_jobs_core::{
    Backend, Clock, Finish, JobId, JobRecord, JobState, Lease, ListQuery, ManualClock, NewJob,
    Outcome, ReserveRequest, Timestamp,
};
use kosh_jobs_redis::{RedisBackend, RedisOptions};
use support::{raw_command, unique_prefix, RedisServer};

const QUEUE: &str = "q";

/// xorshift64*: a seeded, reproducible stream of choices (the seed is in every message).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The same operations on both backends, jobs known by name (ids differ between them).
struct Pair {
    redis: RedisBackend,
    memory: MemoryBackend,
    manual: ManualClock,
    clock: Clock,
    /// name -> (Redis id, memory id)
    ids: HashMap<String, (JobId, JobId)>,
    /// The names pushed, in push order.
    names: Vec<String>,
    /// Leased jobs: name, Redis lease, memory lease.
    leased: Vec<(String, Lease, Lease)>,
    seed: u64,
}

impl Pair {
    async fn new(server: &RedisServer, seed: u64, prefix: &str) -> Pair {
        let (clock, manual) = Clock::manual();
        let redis = RedisBackend::connect_with(
            RedisOptions::builder(server.url())
                .prefix(prefix)
                .clock(clock.clone())
                .build()
                .expect("options"),
        )
        .await
        .expect("connect");
        let memory = MemoryBackend::with_clock(clock.clone());
        Pair {
            redis,
            memory,
            manual,
            clock,
            ids: HashMap::new(),
            names: Vec::new(),
            leased: Vec::new(),
            seed,
        }
    }

    async fn push(&mut self, jobs: Vec<NewJob>) {
        let r = self.redis.push(jobs.clone()).await.expect("redis push");
        let m = self.memory.push(jobs.clone()).await.expect("memory push");
        for ((j, r), m) in jobs.iter().zip(r).zip(m) {
            assert_eq!(
                r.existing, m.existing,
                "seed {}: push of {}: held unique key",
                self.seed, j.name
            );
            if !r.existing {
                self.ids.insert(j.name.clone(), (r.id, m.id));
                self.names.push(j.name.clone());
            }
        }
    }

    async fn reserve(&mut self, max: usize) -> Vec<String> {
        let req = ReserveRequest {
            queues: vec![QUEUE.into()],
            worker: "w".into(),
            max,
            lease: Duration::from_secs(30),
        };
        let r = self.redis.reserve(&req).await.expect("redis reserve");
        let m = self.memory.reserve(&req).await.expect("memory reserve");
        let rn: Vec<String> = r.iter().map(|j| j.name.clone()).collect();
        let mn: Vec<String> = m.iter().map(|j| j.name.clone()).collect();
        assert_eq!(rn, mn, "seed {}: reserve {max}: leased in order", self.seed);
        for (r, m) in r.into_iter().zip(m) {
            assert_eq!(
                r.attempt, m.attempt,
                "seed {}: attempt of {}",
                self.seed, r.name
            );
            self.leased.push((r.name, r.lease, m.lease));
        }
        rn
    }

    async fn finish(&mut self, i: usize, how: u64) {
        let (name, rl, ml) = self.leased.swap_remove(i);
        let now = self.clock.now();
        let outcome = match how {
            0 => Outcome::Completed { result: None },
            1 => Outcome::retry("again now", now),
            2 => Outcome::retry("again soon", now + Duration::from_secs(2)),
            _ => Outcome::failed("for good"),
        };
        let r = self
            .redis
            .finish(vec![Finish {
                lease: rl,
                outcome: outcome.clone(),
            }])
            .await
            .expect("redis finish");
        let m = self
            .memory
            .finish(vec![Finish { lease: ml, outcome }])
            .await
            .expect("memory finish");
        assert_eq!(r, m, "seed {}: finish of {name}", self.seed);
    }

    async fn cancel(&mut self, name: &str) {
        let (ri, mi) = self.ids[name];
        let r = self.redis.cancel(ri).await.expect("redis cancel");
        let m = self.memory.cancel(mi).await.expect("memory cancel");
        assert_eq!(r, m, "seed {}: cancel of {name}", self.seed);
        self.leased.retain(|(n, _, _)| n != name);
    }

    /// Every state's listing, paged, by name; the ready and completed jobs searched newest
    /// first, paged; the counts; and with `each`, each job's state, attempts and finish time
    /// by `get`.
    async fn compare_views(&self, step: usize, each: bool) {
        let seed = self.seed;
        for state in [
            JobState::Ready,
            JobState::Scheduled,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            let r = list_views(&self.redis, state).await;
            let m = list_views(&self.memory, state).await;
            assert_eq!(r, m, "seed {seed} step {step}: list of {state:?}");
        }
        for state in [JobState::Ready, JobState::Completed] {
            let r = search_views(&self.redis, state).await;
            let m = search_views(&self.memory, state).await;
            assert_eq!(r, m, "seed {seed} step {step}: {state:?}, newest first");
        }
        let rc = self.redis.counts().await.expect("redis counts");
        let mc = self.memory.counts().await.expect("memory counts");
        let pick = |c: &[kosh_jobs_core::QueueCounts]| {
            c.iter().find(|c| c.queue == QUEUE).map(|c| {
                (
                    c.scheduled,
                    c.ready,
                    c.running,
                    c.completed,
                    c.failed,
                    c.cancelled,
                )
            })
        };
        assert_eq!(pick(&rc), pick(&mc), "seed {seed} step {step}: counts");
        let view = |j: kosh_jobs_core::JobRecord| (j.state, j.attempts, j.finished_at);
        for name in self.names.iter().filter(|_| each) {
            let (ri, mi) = self.ids[name];
            let r = self.redis.get(ri).await.expect("redis get").map(view);
            let m = self.memory.get(mi).await.expect("memory get").map(view);
            assert_eq!(
                r, m,
                "seed {seed} step {step}: state, attempts, finish of {name}"
            );
        }
    }
}

/// What the differential run compares of a listed job: its name, attempts, start and finish.
type View = (String, u32, Option<Timestamp>, Option<Timestamp>);

fn view(j: JobRecord) -> View {
    (j.name, j.attempts, j.started_at, j.finished_at)
}

async fn list_views(b: &dyn Backend, state: JobState) -> Vec<View> {
    let mut out = Vec::new();
    let mut q = ListQuery::new(state).queue(QUEUE).limit(3);
    loop {
        let page = b.list(&q).await.expect("list");
        out.extend(page.jobs.into_iter().map(view));
        match page.next {
            Some(next) => q = q.after(next),
            None => return out,
        }
    }
}

async fn search_views(b: &dyn Backend, state: JobState) -> Vec<View> {
    let mut out = Vec::new();
    let filter = JobFilter::new().state(state).queue(QUEUE);
    let mut q = SearchQuery::new(filter).order(Order::NewestFirst).limit(4);
    loop {
        let page = b.search(&q).await.expect("search");
        out.extend(page.jobs.into_iter().map(view));
        match page.next {
            Some(next) => q = q.after(next),
            None => return out,
        }
    }
}

/// One random run of `steps` operations, then a drain.
async fn run(server: &RedisServer, seed: u64, steps: usize) {
    let mut p = Pair::new(server, seed, &unique_prefix("ready-lists")).await;
    let mut rng = Rng(seed);
    let mut next = 0;
    for step in 0..steps {
        match rng.below(12) {
            0..=3 => {
                let now = p.clock.now();
                let n = 1 + rng.below(5);
                let mut jobs = Vec::new();
                for _ in 0..n {
                    next += 1;
                    let mut j = NewJob::new(format!("j{next}"), QUEUE, "{}", now);
                    j.priority = [0, 0, 0, 5, -3][rng.below(5) as usize];
                    if rng.below(5) == 0 {
                        // A key often taken already: the job goes to the sorted set, or is
                        // refused while the holder lives.
                        j.unique_key = Some(format!("u{}", rng.below(6)));
                    }
                    if rng.below(6) == 0 {
                        j.run_at = now + Duration::from_secs(1 + rng.below(3));
                    }
                    jobs.push(j);
                }
                p.push(jobs).await;
            }
            4..=6 => {
                let max = 1 + rng.below(4) as usize;
                p.reserve(max).await;
            }
            7 | 8 if !p.leased.is_empty() => {
                let i = rng.below(p.leased.len() as u64) as usize;
                let how = rng.below(4);
                p.finish(i, how).await;
            }
            9 if !p.names.is_empty() => {
                let i = rng.below(p.names.len() as u64) as usize;
                let name = p.names[i].clone();
                p.cancel(&name).await;
            }
            10 => {
                // Time moves only before a reserve: the memory backend shows a scheduled job
                // whose time came as ready at once, Redis once a reserve promoted it.
                p.manual.advance(Duration::from_secs(1));
                p.reserve(1 + rng.below(3) as usize).await;
            }
            _ => p.compare_views(step, step % 8 == 0).await,
        }
    }
    p.compare_views(steps, true).await;
    // Drain: everything ready or scheduled runs, in the same order on both.
    p.manual.advance(Duration::from_secs(10));
    loop {
        if p.reserve(3).await.is_empty() {
            break;
        }
    }
    p.compare_views(steps + 1, true).await;
}

/// Random runs agree with the memory backend at every step.
#[tokio::test]
async fn the_lists_and_the_set_read_as_one_queue() {
    let server = RedisServer::start(&[]);
    for seed in [0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d, 42] {
        run(&server, seed, 400).await;
    }
}

/// Which keys hold the ready jobs: plain pushes go to the lists (one per priority), a job with
/// a unique key to the sorted set, and a reserve takes them by priority, then id, across both.
#[tokio::test]
async fn plain_jobs_wait_in_lists_and_lease_in_order_with_the_set() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("ready-lists-keys");
    let mut p = Pair::new(&server, 0, &prefix).await;
    let now = p.clock.now();
    let job = |name: &str, priority: i32, key: Option<&str>| {
        let mut j = NewJob::new(name, QUEUE, "{}", now);
        j.priority = priority;
        j.unique_key = key.map(str::to_owned);
        j
    };
    p.push(vec![job("a", 0, None)]).await;
    p.push(vec![job("b", 0, Some("kb"))]).await;
    p.push(vec![job("c", 0, None), job("d", 5, None)]).await;
    p.push(vec![job("e", 5, Some("ke"))]).await;
    let key = |k: &str| format!("{{{prefix}:{QUEUE}}}:{k}");
    let cmd = |args: &[&str]| raw_command(server.port, None, args).trim().to_owned();
    assert_eq!(cmd(&["LLEN", &key("rl:0")]), ":2", "a and c");
    assert_eq!(cmd(&["LLEN", &key("rl:-5")]), ":1", "d");
    assert_eq!(cmd(&["ZCARD", &key("ready")]), ":2", "b and e");
    assert_eq!(p.reserve(2).await, ["d", "e"]);
    assert_eq!(p.reserve(1).await, ["a"]);
    assert_eq!(p.reserve(5).await, ["b", "c"]);
    // The lists are gone with their jobs, and their scores with them.
    for k in ["rl:0", "rl:-5", "rlp", "ready"] {
        assert_eq!(cmd(&["EXISTS", &key(k)]), ":0", "{k}");
    }
}

/// A prefix of layout 7 (every ready job in the sorted set) is upgraded in place: its jobs
/// lease before the newer ones pushed to the lists after the upgrade.
#[tokio::test]
async fn layout_7_is_upgraded_in_place() {
    let server = RedisServer::start(&[]);
    let prefix = unique_prefix("layout-v7");
    let layout = format!("{{{prefix}}}:layout");
    let b = support::backend(&server, &prefix).await;
    // Jobs with a unique key go to the sorted set, as every ready job did in layout 7.
    let mut old = Vec::new();
    for i in 0..3 {
        let mut j = NewJob::new(format!("old{i}"), QUEUE, "{}", b.clock().now());
        j.unique_key = Some(format!("k{i}"));
        old.push(j);
    }
    b.push(old).await.expect("push");
    drop(b);
    raw_command(server.port, None, &["SET", &layout, "7"]);
    let b = support::backend(&server, &prefix).await;
    assert_eq!(
        raw_command(server.port, None, &["GET", &layout]).trim(),
        kosh_jobs_redis::LAYOUT.to_string()
    );
    let new = NewJob::new("new", QUEUE, "{}", b.clock().now());
    b.push(vec![new]).await.expect("push");
    let names: Vec<String> = support::reserve(&b, QUEUE, 10)
        .await
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["old0", "old1", "old2", "new"]);
}
