//! Time, through one place.
//!
//! Every decision that depends on time (is a delayed job due, has a lease expired, when does a
//! retry run) reads [`Clock::now`]. Production uses [`Clock::system`]; tests use
//! [`Clock::manual`] and move time forward by hand, so delays, backoff and lease expiry are
//! tested without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A point in time: milliseconds since the Unix epoch (UTC).
///
/// Millisecond precision is what every backend stores, so it is what the contract speaks.
///
/// ```
/// use kosh_jobs::Timestamp;
/// use std::time::Duration;
///
/// let t = Timestamp::from_millis(1_000);
/// assert_eq!(t + Duration::from_secs(2), Timestamp::from_millis(3_000));
/// assert_eq!(t.as_millis(), 1_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time. Prefer [`Clock::now`] in code that tests should control.
    pub fn now_system() -> Self {
        Self::from(SystemTime::now())
    }

    /// The duration from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// `self + d`, saturating at the end of representable time.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(t.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(t.0.unsigned_abs())
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The source of time for a backend and a worker.
///
/// Cheap to clone; clones share the same time source.
///
/// ```
/// use kosh_jobs::Clock;
/// use std::time::Duration;
///
/// let (clock, handle) = Clock::manual();
/// let before = clock.now();
/// handle.advance(Duration::from_secs(30));
/// assert_eq!(clock.now(), before + Duration::from_secs(30));
/// ```
#[derive(Clone)]
pub struct Clock {
    inner: ClockInner,
}

#[derive(Clone)]
enum ClockInner {
    System,
    Manual(Arc<ManualState>),
}

struct ManualState {
    now: AtomicI64,
    changed: watch::Sender<i64>,
    /// The deadlines of the sleeps in progress, with how many sleep until each.
    sleeping: std::sync::Mutex<std::collections::BTreeMap<i64, usize>>,
}

impl ManualState {
    fn sleeping(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<i64, usize>> {
        // The map stays consistent whatever panicked while holding it.
        self.sleeping.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A sleep in progress on a manual clock: listed from its start until it ends or is dropped.
struct Sleeper<'a> {
    state: &'a ManualState,
    deadline: i64,
}

impl<'a> Sleeper<'a> {
    fn new(state: &'a ManualState, deadline: i64) -> Self {
        *state.sleeping().entry(deadline).or_insert(0) += 1;
        Sleeper { state, deadline }
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        let mut m = self.state.sleeping();
        if let Some(n) = m.get_mut(&self.deadline) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.deadline);
            }
        }
    }
}

/// Moves a manual clock forward. Obtained from [`Clock::manual`].
///
/// ```
/// use kosh_jobs::{Clock, Timestamp};
/// use std::time::Duration;
/// let (clock, hand) = Clock::manual_at(Timestamp::from_millis(0));
/// hand.advance(Duration::from_millis(1500));
/// hand.set(Timestamp::from_millis(1000)); // never backwards
/// assert_eq!(clock.now(), Timestamp::from_millis(1500));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    state: Arc<ManualState>,
}

impl Clock {
    /// Wall-clock time.
    pub fn system() -> Self {
        Clock {
            inner: ClockInner::System,
        }
    }

    /// A clock that only moves when told to, starting at the current wall-clock time
    /// (rounded to the second, so printed times stay readable).
    pub fn manual() -> (Clock, ManualClock) {
        let start = Timestamp::now_system().as_millis() / 1000 * 1000;
        Self::manual_at(Timestamp::from_millis(start))
    }

    /// A manual clock starting at `start`.
    pub fn manual_at(start: Timestamp) -> (Clock, ManualClock) {
        let (tx, _rx) = watch::channel(start.as_millis());
        let state = Arc::new(ManualState {
            now: AtomicI64::new(start.as_millis()),
            changed: tx,
            sleeping: Default::default(),
        });
        (
            Clock {
                inner: ClockInner::Manual(state.clone()),
            },
            ManualClock { state },
        )
    }

    /// Whether this clock is manual (moved by a test).
    pub fn is_manual(&self) -> bool {
        matches!(self.inner, ClockInner::Manual(_))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.inner {
            ClockInner::System => Timestamp::now_system(),
            ClockInner::Manual(s) => Timestamp(s.now.load(Ordering::SeqCst)),
        }
    }

    /// Waits until this clock reads `deadline` or later.
    ///
    /// On the system clock this is a timer of the calling tokio runtime. On a manual clock it
    /// returns once [`ManualClock::advance`] has moved time past the deadline, whatever runtime
    /// it is polled on.
    pub async fn sleep_until(&self, deadline: Timestamp) {
        match &self.inner {
            ClockInner::System => {
                let now = Timestamp::now_system();
                if deadline > now {
                    tokio::time::sleep(deadline.saturating_duration_since(now)).await;
                }
            }
            ClockInner::Manual(s) => {
                let mut rx = s.changed.subscribe();
                if s.now.load(Ordering::SeqCst) >= deadline.as_millis() {
                    return;
                }
                let _listed = Sleeper::new(s, deadline.as_millis());
                loop {
                    if s.now.load(Ordering::SeqCst) >= deadline.as_millis() {
                        return;
                    }
                    if rx.changed().await.is_err() {
                        // The sender lives as long as `s`; this cannot happen, but never spin.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Waits for `d` as measured by this clock.
    pub async fn sleep(&self, d: Duration) {
        let deadline = self.now() + d;
        self.sleep_until(deadline).await
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            ClockInner::System => f.write_str("Clock::system"),
            ClockInner::Manual(s) => write!(f, "Clock::manual({})", s.now.load(Ordering::SeqCst)),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl ManualClock {
    /// Moves time forward by `d` and wakes everything waiting on the clock.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let now = self
            .state
            .now
            .fetch_add(ms, Ordering::SeqCst)
            .saturating_add(ms);
        self.state.changed.send_replace(now);
    }

    /// Sets the time; never moves it backwards.
    pub fn set(&self, t: Timestamp) {
        let now = self
            .state
            .now
            .fetch_max(t.as_millis(), Ordering::SeqCst)
            .max(t.as_millis());
        self.state.changed.send_replace(now);
    }

    /// The current time of the clock.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.state.now.load(Ordering::SeqCst))
    }

    /// The deadlines of the sleeps on this clock in progress now, earliest first, one entry
    /// per sleep. A test can tell from it what is waiting for time to move, and whether the
    /// sleepers an advance woke have all run (none is left at or before [`now`](Self::now)).
    ///
    /// ```
    /// use kosh_jobs::{Clock, Timestamp};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (clock, hand) = Clock::manual_at(Timestamp::from_millis(0));
    /// let c = clock.clone();
    /// let nap = tokio::spawn(async move { c.sleep(Duration::from_secs(5)).await });
    /// while hand.sleepers().is_empty() {
    ///     tokio::task::yield_now().await;
    /// }
    /// assert_eq!(hand.sleepers(), vec![Timestamp::from_millis(5000)]);
    /// hand.advance(Duration::from_secs(5));
    /// nap.await.unwrap();
    /// assert!(hand.sleepers().is_empty());
    /// # }
    /// ```
    pub fn sleepers(&self) -> Vec<Timestamp> {
        self.state
            .sleeping()
            .iter()
            .flat_map(|(t, n)| std::iter::repeat_n(Timestamp(*t), *n))
            .collect()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({})", self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_wakes_on_advance() {
        let (clock, handle) = Clock::manual();
        let deadline = clock.now() + Duration::from_secs(10);
        let c2 = clock.clone();
        let task = tokio::spawn(async move { c2.sleep_until(deadline).await });
        tokio::task::yield_now().await;
        handle.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        handle.advance(Duration::from_secs(5));
        task.await.expect("sleep task");
        assert!(clock.now() >= deadline);
    }

    #[test]
    fn timestamp_conversions_round_trip() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        let s: SystemTime = t.into();
        assert_eq!(Timestamp::from(s), t);
        let neg = Timestamp::from_millis(-5);
        assert_eq!(Timestamp::from(SystemTime::from(neg)), neg);
        assert_eq!(
            Timestamp::from_millis(10).saturating_duration_since(Timestamp::from_millis(20)),
            Duration::ZERO
        );
    }
}
