//! Flow control: limits on a queue that every worker of every process obeys, because they are
//! kept in the store and enforced by [`Backend::reserve`](crate::Backend::reserve) itself.
//!
//! - A **concurrency** limit: at most K jobs of the queue running at once, across all workers.
//!   A slot is taken by a lease and freed when the job leaves `running` (finished, released,
//!   cancelled, or its expired lease recovered), so a crashed worker never keeps one.
//! - A **rate** limit: at most N starts in any window of the given length. The store keeps the
//!   times of the last N starts (a sliding log), so the limit holds in *every* window, not only
//!   in fixed ones: Bull's fixed window lets 2N-1 jobs start across a window's edge.
//!
//! - A **hold**: no job of the queue starts before a given time
//!   ([`Backend::hold_queue`](crate::Backend::hold_queue)), set by a handler told to slow down
//!   (an HTTP 429) with [`JobError::rate_limited`](crate::JobError::rate_limited).
//!
//! A job held back by a limit stays `ready`: no attempt is counted and nothing fails. A worker
//! waiting for work sleeps until the rate window has room again, or until a running job of the
//! queue ends (the backend wakes it), never in a hot loop.
//!
//! # Groups
//!
//! A job may carry a **group key** ([`Enqueue::group`](crate::Enqueue::group), or
//! `#[job(group = field)]`), such as the user it works for. Every queue is fair between its
//! groups: the next job is taken **round-robin over the groups that have ready jobs**, one job
//! per group per turn, so a group with 10,000 ready jobs cannot starve a group with one. The
//! jobs without a group take their turn together, as if they were one more group. Inside a
//! group (and among the jobs without one) priority, then enqueue order, decides; between
//! groups, only the turns do. A queue whose jobs carry no group runs exactly as before.
//!
//! A queue may also limit the jobs of each group running at once
//! ([`QueueLimits::group_concurrency`]): a group at its limit is skipped until one of its jobs
//! leaves `running`. A group's slot is its running job's lease, so a crashed worker's slot is
//! freed when its lease is recovered, never left taken. And it may limit each group's starts
//! ([`QueueLimits::group_rate`]): at most N starts of a group in any window, a sliding log
//! per group, like the queue's rate limit. A group at either limit is skipped, the other
//! groups go on; the jobs without a group are limited by neither.
//!
//! ```
//! use std::time::Duration;
//! use kosh_jobs_core::limits::{QueueLimits, RateLimit};
//!
//! // At most 2 imports at once, and at most 10 starts in any second.
//! let limits = QueueLimits::default()
//!     .with_concurrency(2)
//!     .with_rate(RateLimit::new(10, Duration::from_secs(1)));
//! assert!(limits.validate().is_ok());
//! // One import at a time per user.
//! let per_user = QueueLimits::default().with_group_concurrency(1);
//! assert!(per_user.validate().is_ok());
//! assert!(QueueLimits::default().with_concurrency(0).validate().is_err());
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// The most starts a rate limit may allow per window: the store keeps one time per start
/// allowed, so this bounds the log a reserve reads.
pub const MAX_RATE: u32 = 10_000;

/// The longest window a rate limit may have.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The limits of one queue (none by default). See the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLimits {
    /// At most this many jobs of the queue running at once, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most so many starts in any window of so long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// At most this many jobs of each group running at once (see [Groups](self#groups)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_concurrency: Option<u32>,
    /// At most so many starts of each group in any window of so long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_rate: Option<RateLimit>,
}

/// At most `max` job starts in any window of length `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Starts allowed per window.
    pub max: u32,
    /// The window's length, in milliseconds in the serialized form.
    #[serde(rename = "per_ms", with = "millis")]
    pub per: Duration,
}

impl RateLimit {
    /// At most `max` starts in any window of length `per`.
    pub fn new(max: u32, per: Duration) -> Self {
        RateLimit { max, per }
    }

    /// How many more jobs may start at `now`, and if none may, when the next one may.
    ///
    /// `recent` holds the start times the store kept for the queue, oldest first (a backend
    /// keeps the last `max` of them; older ones never matter).
    pub fn room(&self, recent: &[Timestamp], now: Timestamp) -> (u32, Option<Timestamp>) {
        // A start at `t` is in the window of `now` when now - per < t.
        let from = now.saturating_sub(self.per);
        let in_window = recent.iter().filter(|&&t| t > from).count();
        let in_window = u32::try_from(in_window).unwrap_or(u32::MAX);
        let room = self.max.saturating_sub(in_window);
        if room > 0 {
            return (room, None);
        }
        // Full: the oldest start that counts leaves the window `per` after it happened.
        let counted = recent.len().saturating_sub(self.max as usize);
        let next = recent
            .get(counted..)
            .and_then(|r| r.iter().copied().find(|&t| t > from))
            .map(|t| t.saturating_add(self.per));
        (0, next)
    }
}

impl QueueLimits {
    /// No limit.
    pub const NONE: QueueLimits = QueueLimits {
        concurrency: None,
        rate: None,
        group_concurrency: None,
        group_rate: None,
    };

    /// With a concurrency limit of `k` running jobs.
    pub fn with_concurrency(mut self, k: u32) -> Self {
        self.concurrency = Some(k);
        self
    }

    /// With a rate limit.
    pub fn with_rate(mut self, rate: RateLimit) -> Self {
        self.rate = Some(rate);
        self
    }

    /// With a limit of `k` running jobs per group.
    pub fn with_group_concurrency(mut self, k: u32) -> Self {
        self.group_concurrency = Some(k);
        self
    }

    /// With a rate limit per group.
    pub fn with_group_rate(mut self, rate: RateLimit) -> Self {
        self.group_rate = Some(rate);
        self
    }

    /// Whether no limit is set.
    pub fn is_none(&self) -> bool {
        self.concurrency.is_none()
            && self.rate.is_none()
            && self.group_concurrency.is_none()
            && self.group_rate.is_none()
    }

    /// Whether a group limit is set (concurrency or rate).
    pub fn limits_groups(&self) -> bool {
        self.group_concurrency.is_some() || self.group_rate.is_some()
    }

    /// Checks the limits, with a message saying what is wrong. Backends call this before
    /// storing limits; a concurrency of 0 is refused (pause the queue instead).
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == Some(0) {
            return Err(
                "a concurrency limit must be at least 1 (to stop a queue, pause it)".to_owned(),
            );
        }
        if self.group_concurrency == Some(0) {
            return Err("a group concurrency limit must be at least 1".to_owned());
        }
        for (what, r) in [
            ("rate limit", self.rate),
            ("group rate limit", self.group_rate),
        ] {
            let Some(r) = r else { continue };
            if r.max == 0 || r.max > MAX_RATE {
                return Err(format!(
                    "a {what} allows 1 to {MAX_RATE} starts per window, not {}",
                    r.max
                ));
            }
            if r.per < Duration::from_millis(1) || r.per > MAX_RATE_WINDOW {
                return Err(format!(
                    "a {what}'s window is 1 ms to 24 h long, not {:?}",
                    r.per
                ));
            }
        }
        Ok(())
    }
}

/// The limits of a queue and where the queue stands against them, as the admin surface shows
/// them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFlow {
    /// The queue.
    pub queue: String,
    /// Its limits.
    pub limits: QueueLimits,
    /// Jobs of the queue running now.
    pub running: u64,
    /// Starts in the current rate window (0 without a rate limit).
    pub starts_in_window: u64,
    /// When the rate limit lets the next job start, if it holds jobs back now.
    pub next_start_at: Option<Timestamp>,
    /// No job of the queue starts before this time, if a hold
    /// ([`Backend::hold_queue`](crate::Backend::hold_queue)) is still in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<Timestamp>,
    /// Groups with a job running now.
    #[serde(default)]
    pub groups_running: u64,
    /// Groups that may start no job now: their running jobs reached the group concurrency
    /// limit, or their starts the group rate limit.
    #[serde(default)]
    pub groups_at_limit: u64,
    /// Ready jobs of the groups that may start no job now: held back by their group's limit
    /// whatever room the queue has. A backend that counts by reading an index may stop at
    /// [`crate::admin::TOTAL_BOUND`] per group (SQLite, Postgres), so the count stays bounded
    /// on a sampler's every call.
    #[serde(default)]
    pub held_in_groups: u64,
}

impl QueueFlow {
    /// How many of the queue's `ready` jobs its limits and hold keep back now: those in
    /// groups at their limit, and those beyond the room the queue's own concurrency and rate
    /// limits leave. `ready` is the queue's ready count (from
    /// [`Backend::counts`](crate::Backend::counts)).
    ///
    /// ```
    /// use kosh_jobs_core::limits::{QueueFlow, QueueLimits};
    ///
    /// let flow = QueueFlow {
    ///     queue: "imports".into(),
    ///     limits: QueueLimits::default().with_concurrency(3).with_group_concurrency(1),
    ///     running: 1,
    ///     held_in_groups: 4,
    ///     ..QueueFlow::default()
    /// };
    /// // 10 ready: 4 wait for their group, 2 of the other 6 may start (3 slots, 1 taken).
    /// assert_eq!(flow.held_back(10), 8);
    /// ```
    pub fn held_back(&self, ready: u64) -> u64 {
        let mut room = u64::MAX;
        if self.held_until.is_some() {
            room = 0;
        }
        if let Some(k) = self.limits.concurrency {
            room = room.min(u64::from(k).saturating_sub(self.running));
        }
        if let Some(r) = self.limits.rate {
            room = room.min(u64::from(r.max).saturating_sub(self.starts_in_window));
        }
        let free = ready.saturating_sub(self.held_in_groups);
        ready - free.min(room)
    }
}

/// The most groups one [`Backend::queue_groups`](crate::Backend::queue_groups) call returns.
pub const MAX_GROUP_PAGE: usize = 500;

/// Which of a queue's groups to list ([`Backend::queue_groups`](crate::Backend::queue_groups)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupQuery {
    /// The queue.
    pub queue: String,
    /// List the groups whose key sorts (by bytes) after this one: the previous page's
    /// [`GroupPage::next`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many groups (clamped to 1..=[`MAX_GROUP_PAGE`]; 100 by default).
    pub limit: usize,
}

impl GroupQuery {
    /// The first page of `queue`'s groups, 100 at most.
    pub fn new(queue: impl Into<String>) -> Self {
        GroupQuery {
            queue: queue.into(),
            after: None,
            limit: 100,
        }
    }

    /// Continue after the group `group` (a [`GroupPage::next`]).
    pub fn after(mut self, group: impl Into<String>) -> Self {
        self.after = Some(group.into());
        self
    }

    /// At most `limit` groups.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The limit a backend applies: at least 1, at most [`MAX_GROUP_PAGE`].
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_GROUP_PAGE)
    }
}

/// One group of a queue and where it stands against the queue's group limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFlow {
    /// The group key.
    pub group: String,
    /// Its ready jobs, counted exactly up to [`crate::admin::TOTAL_BOUND`].
    pub ready: crate::admin::Total,
    /// Its jobs running now.
    pub running: u64,
    /// Its starts in the current group rate window (0 without a group rate limit).
    pub starts_in_window: u64,
    /// It may start no job now: its running jobs reached the group concurrency limit, or its
    /// starts the group rate limit.
    pub at_limit: bool,
    /// When the group rate limit lets it start its next job, if that limit holds it back now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_at: Option<Timestamp>,
}

/// One page of a queue's groups, sorted by key (bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPage {
    /// The groups of this page.
    pub groups: Vec<GroupFlow>,
    /// Pass as [`GroupQuery::after`] to continue: the last group of this page, `None` once
    /// no group is left after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn room_counts_only_starts_inside_the_window() {
        let r = RateLimit::new(3, Duration::from_millis(1000));
        assert_eq!(r.room(&[], at(5000)), (3, None));
        // 4000 is exactly `per` before 5000: out of the window (now - per, now].
        assert_eq!(r.room(&[at(4000), at(4500)], at(5000)), (2, None));
        assert_eq!(
            r.room(&[at(4001), at(4500), at(4999)], at(5000)),
            (0, Some(at(5001)))
        );
    }

    #[test]
    fn a_full_window_opens_when_its_oldest_counted_start_leaves() {
        let r = RateLimit::new(2, Duration::from_millis(1000));
        // The log may hold more than `max` (a lowered limit): only the last `max` count.
        let log = [at(100), at(4200), at(4300), at(4600)];
        assert_eq!(r.room(&log, at(4700)), (0, Some(at(5300))));
        assert_eq!(r.room(&log, at(5300)), (1, None));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(QueueLimits::NONE.validate().is_ok());
        let e = QueueLimits::default().with_concurrency(0).validate();
        assert!(e.is_err_and(|e| e.contains("pause")));
        let e = QueueLimits::default()
            .with_rate(RateLimit::new(0, Duration::from_secs(1)))
            .validate();
        assert!(e.is_err_and(|e| e.contains("not 0")));
        let e = QueueLimits::default()
            .with_rate(RateLimit::new(MAX_RATE + 1, Duration::from_secs(1)))
            .validate();
        assert!(e.is_err());
        let e = QueueLimits::default()
            .with_rate(RateLimit::new(5, Duration::ZERO))
            .validate();
        assert!(e.is_err_and(|e| e.contains("window")));
    }

    #[test]
    fn group_limits_validate_and_serialize() {
        let e = QueueLimits::default().with_group_concurrency(0).validate();
        assert!(e.is_err_and(|e| e.contains("group")));
        let l = QueueLimits::default().with_group_concurrency(1);
        assert!(!l.is_none());
        let s = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(s, r#"{"group_concurrency":1}"#);
        let l = l.with_group_rate(RateLimit::new(2, Duration::from_secs(60)));
        assert!(l.limits_groups() && l.validate().is_ok());
        let s = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(
            s,
            r#"{"group_concurrency":1,"group_rate":{"max":2,"per_ms":60000}}"#
        );
        let e = QueueLimits::default()
            .with_group_rate(RateLimit::new(0, Duration::from_secs(1)))
            .validate();
        assert!(e.is_err_and(|e| e.contains("group rate")));
    }

    #[test]
    fn serialized_form_is_plain() {
        let l = QueueLimits::default()
            .with_concurrency(2)
            .with_rate(RateLimit::new(10, Duration::from_secs(1)));
        let s = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(s, r#"{"concurrency":2,"rate":{"max":10,"per_ms":1000}}"#);
        let back: QueueLimits = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(back, l);
        assert_eq!(
            serde_json::to_string(&QueueLimits::NONE).ok().as_deref(),
            Some("{}")
        );
    }
}
