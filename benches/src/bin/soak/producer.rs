//! The producer: a steady stream of single enqueues, as a web process makes them, drawn
//! from the seed: plain, delayed, prioritised and unique-keyed jobs, jobs that fail a few
//! times and then succeed, a share that fail permanently (on purpose), and small shares
//! whose first attempt panics, times out, or blocks its thread past the lease.

use std::time::{Duration, Instant};

use kosh_jobs::{Client, Enqueue, Enqueued as Pushed, JobId};
use tokio::sync::oneshot;

use crate::faults::rand_between;
use crate::jobs::{now_ms, Act, SoakJob, SoakTimeoutJob};

/// One job the store acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct Enqueued {
    pub(crate) key: u64,
    pub(crate) id: JobId,
    pub(crate) act: Act,
    /// When it became (or becomes) due, in milliseconds since the Unix epoch.
    pub(crate) due_ms: u64,
    /// Enqueued with one attempt allowed: a fault during it fails it for good.
    pub(crate) one_attempt: bool,
    /// When the store acknowledged it, in milliseconds since the Unix epoch.
    pub(crate) acked_ms: u64,
}

/// What the producer did.
#[derive(Debug, Default)]
pub(crate) struct Produced {
    pub(crate) jobs: Vec<Enqueued>,
    /// Keys whose enqueue failed or timed out: the job may or may not exist.
    pub(crate) ambiguous: Vec<u64>,
    /// The first few enqueue errors.
    pub(crate) errors: Vec<String>,
    /// Unique-keyed jobs enqueued twice while the first was live.
    pub(crate) unique_pairs: u64,
    /// Second enqueues of a live unique key that added a job or named another one.
    pub(crate) unique_violations: Vec<String>,
    /// Jobs by kind, in [`KINDS`]' order.
    pub(crate) by_kind: [u64; 10],
}

/// The kinds in [`Produced::by_kind`]'s order.
pub(crate) const KINDS: [&str; 10] = [
    "plain",
    "delayed",
    "prioritised",
    "unique-keyed",
    "fail N times then succeed",
    "fail permanently",
    "panic once",
    "time out once",
    "block the thread past the lease once",
    "one attempt only",
];

/// How long a unique-keyed job is delayed, so its duplicate finds it live.
const UNIQUE_DELAY: Duration = Duration::from_secs(2);

/// Enqueues about `rate` jobs a second until `stop` fires; `one_attempt` per mille of them
/// with one attempt allowed.
pub(crate) async fn produce(
    client: Client,
    seed: u64,
    rate: u32,
    lease: Duration,
    one_attempt: u32,
    mut stop: oneshot::Receiver<()>,
) -> Produced {
    // Its own stream of draws, apart from the fault injector's.
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut out = Produced::default();
    let tick = Duration::from_millis(100);
    let started = Instant::now();
    let mut key = 0_u64;
    let mut ticks = 0_u64;
    loop {
        ticks += 1;
        // Jobs due by the end of this tick, whatever time the enqueues took.
        let target = u64::from(rate) * ticks / 10;
        while key < target {
            key += 1;
            produce_one(&client, &mut rng, key, lease, one_attempt, &mut out).await;
        }
        let next = started + tick * ticks as u32;
        tokio::select! {
            _ = &mut stop => return out,
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

async fn produce_one(
    client: &Client,
    rng: &mut fastrand::Rng,
    key: u64,
    lease: Duration,
    one_attempt: u32,
    out: &mut Produced,
) {
    let job = SoakJob {
        key,
        act: Act::Plain,
        sleep_ms: rng.u64(0..50),
        block_ms: (lease + Duration::from_secs(1)).as_millis() as u64,
    };
    // One attempt only (`--one-attempt` per mille), else the mix below (per mille of 955).
    let roll = if rng.u32(0..1000) < one_attempt {
        1000
    } else {
        rng.u32(0..955)
    };
    let mut delay = Duration::ZERO;
    let (kind, act, prepared) = match roll {
        400..=499 => {
            delay = rand_between(rng, Duration::from_millis(200), Duration::from_secs(3));
            (
                1,
                Act::Plain,
                client.prepare(Enqueue::new(job).delay(delay)),
            )
        }
        500..=599 => {
            let e = Enqueue::new(job).priority(rng.i32(1..=10));
            (2, Act::Plain, client.prepare(e))
        }
        600..=679 => {
            delay = UNIQUE_DELAY;
            let e = Enqueue::new(job)
                .delay(delay)
                .unique(format!("soak-u-{key}"));
            (3, Act::Plain, client.prepare(e))
        }
        680..=799 => with_act(client, job, 4, Act::FailThenOk(rng.u32(1..=3))),
        800..=859 => with_act(client, job, 5, Act::Permanent),
        860..=899 => with_act(client, job, 6, Act::PanicOnce),
        900..=949 => {
            let job = SoakTimeoutJob(SoakJob {
                act: Act::TimeoutOnce,
                ..job
            });
            (7, Act::TimeoutOnce, client.prepare(job))
        }
        950..=954 => with_act(client, job, 8, Act::BlockOnce),
        1000 => {
            let e = Enqueue::new(job).max_attempts(1);
            (9, Act::Plain, client.prepare(e))
        }
        _ => (0, Act::Plain, client.prepare(job)),
    };
    let new = match prepared {
        Ok(n) => n,
        Err(e) => {
            note_error(
                out,
                format!("preparing job {key}: {}", kosh_jobs::ErrorChain(&e)),
            );
            return;
        }
    };
    let first = match push(client, new.clone()).await {
        Ok(p) => p,
        Err(e) => {
            note_error(out, format!("enqueue of job {key}: {e:#}"));
            out.ambiguous.push(key);
            return;
        }
    };
    out.by_kind[kind] += 1;
    let acked_ms = now_ms();
    out.jobs.push(Enqueued {
        key,
        id: first.id,
        act,
        due_ms: now_ms() + delay.as_millis() as u64,
        one_attempt: kind == 9,
        acked_ms,
    });
    if kind == 3 {
        let t = Instant::now();
        match push(client, new).await {
            Ok(dup) if t.elapsed() < UNIQUE_DELAY / 2 => {
                out.unique_pairs += 1;
                if !dup.existing || dup.id != first.id {
                    out.unique_violations.push(format!(
                        "unique key soak-u-{key}: first enqueue gave job {}, the second \
                         (while it was live) gave job {} (existing: {})",
                        first.id, dup.id, dup.existing
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => note_error(out, format!("second enqueue of unique job {key}: {e}")),
        }
    }
}

async fn push(client: &Client, new: kosh_jobs::NewJob) -> anyhow::Result<Pushed> {
    let pushed = tokio::time::timeout(Duration::from_secs(10), client.push_raw(vec![new]))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 10 s"))??;
    pushed
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the store acknowledged no job"))
}

fn note_error(out: &mut Produced, e: String) {
    if out.errors.len() < 10 {
        out.errors.push(e);
    }
}

fn with_act(
    client: &Client,
    job: SoakJob,
    kind: usize,
    act: Act,
) -> (usize, Act, Result<kosh_jobs::NewJob, kosh_jobs::Error>) {
    (kind, act, client.prepare(SoakJob { act, ..job }))
}
