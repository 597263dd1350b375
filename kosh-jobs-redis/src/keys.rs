//! The key scheme, in one place.
//!
//! Every key of one queue starts with `{prefix:queue}`, so they share a hash tag and Redis
//! Cluster keeps them in one slot: each Lua script touches one queue only. The keys that span
//! queues live under `{prefix}` and are touched by their own commands, never together with a
//! queue's keys:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:queues` | hash | queue name → queue index (1..=65535) |
//! | `{prefix}:qnames` | hash | queue index → queue name |
//! | `{prefix}:seq` | string | the job sequence counter (ids increase in push order) |
//! | `{prefix}:layout` | string | the storage layout of the keys under the prefix ([`LAYOUT`]) |
//! | `{prefix}:workers` | hash | worker id → `last_seen|` then its `WorkerInfo` as JSON |
//! | `{prefix}:wexp` | zset | worker ids by the time their registration ends |
//! | `{prefix}:cronids` | hash | schedule id → the queue whose slot holds the schedule (see `ops/schedules.rs`) |
//! | `{prefix}:limited` | set | the queues that have (or recently had) flow limits or a hold, for `queue_flows` |
//! | `{prefix:queue}:spec` | hash | member → the job's immutable part, packed by the client (see `spec.rs`) |
//! | `{prefix:queue}:run` | hash | member → `attempts,started_at,token,worker` of its latest attempt (worker: a number, see `wid`); none while a first attempt runs on a lease its reserve call implies (`rc`); a completed job's is in its `c:<bucket>` entry |
//! | `{prefix:queue}:rc` | hash | per reserve call whose jobs were all on their first attempt, its number `tok` → `started_at,,worker`, `n<tok>` → its live leases, `m<tok>` → the members it leased, concatenated; gone with its last lease |
//! | `{prefix:queue}:fin` | hash | member → `finished_at`, failed or cancelled (completed: in its `c:<bucket>` entry) |
//! | `{prefix:queue}:res`, `:err`, `:pg`, `:ra` | hash | member → result, attempt errors, progress, run_at moved by a retry or a promote |
//! | `{prefix:queue}:hist` | hash | member → its ended attempts but a completed one, `attempt,worker,started_at,duration_ms,code;` each, the latest 25 (errors pair with `err` from the end) |
//! | `{prefix:queue}:wid` | hash | the queue's worker numbers: `n:<worker id>` → number, number → worker id, `n` → the last number given |
//! | `{prefix:queue}:tp` | hash | `c<minute>` / `f<minute>` → jobs completed / failed in the minute (start in ms), for 7 days |
//! | `{prefix:queue}:tpm` | zset | the minutes `tp` holds (score = member = minute start), to drop old ones |
//! | `{prefix:queue}:ready` | zset | ready jobs without a group but those in the ready lists, score `-priority`, ties by member (= enqueue order) |
//! | `{prefix:queue}:rl:<score>` | list | new jobs pushed ready (plain forms, single server) of ready score `<score>` (`-priority`), in member order; merged with `ready` by score, then member |
//! | `{prefix:queue}:rlp` | zset | the scores other than 0 that have a ready list (score = member = the score); `rl:0`, the default priority's, is never noted |
//! | `{prefix:queue}:sched` | zset | scheduled jobs by `run_at` |
//! | `{prefix:queue}:lease` | zset | running jobs by lease deadline (recovery is one range query); the deadline + 0.5 once a heartbeat marked the attempt started |
//! | `{prefix:queue}:uns` | hash | member → how many of its leases expired before the attempt started (given back, at most `MAX_UNSTARTED_EXPIRIES`); only jobs that had one |
//! | `{prefix:queue}:s:<state>` | zset | every scheduled, failed or cancelled job, score = member = the job's member (listing, counts) |
//! | `{prefix:queue}:c:<bucket>` | list | completed jobs whose member starts with `<bucket>` (its first 14 digits), in the order they completed: `<last 2 digits>,<finished_at>,<its run entry>` each |
//! | `{prefix:queue}:cb` | zset | the buckets with a `c:<bucket>` list (score = member = the bucket); may note a bucket whose list is gone |
//! | `{prefix:queue}:cn` | string | how many jobs are completed |
//! | `{prefix:queue}:t:<state>` | zset | final states by `finished_at` (purge, retention) |
//! | `{prefix}:uniq` (cluster: `{prefix:queue}:uniq`) | hash | unique key → job ref of the live job holding it |
//! | `{prefix:queue}:again` | set | waiting jobs that ran before (only these have a `run` entry reserve must read) |
//! | `{prefix:queue}:tok` | string | the queue's reserve call counter: lease tokens are `call * 10000 + 2k` (+1 with a unique key) |
//! | `{prefix:queue}:paused` | string | present while the queue is paused |
//! | `{prefix:queue}:wake` | list | wake-up tokens for workers blocked in `BLPOP` |
//! | `{prefix:queue}:lim` | hash | the queue's flow limits: `c` concurrency, `rm` / `rp` rate (starts per window, window in ms), `g` group concurrency, `gm` / `gp` group rate (starts of each group per window, window in ms), and `h` the end of a hold (ms); absent without limits or hold |
//! | `{prefix:queue}:grp` | hash | member → the job's group key, for jobs with a group |
//! | `{prefix:queue}:gready:<group>` | zset | the group's ready jobs, scored as in `ready` |
//! | `{prefix:queue}:gall` | zset | every ready job with a group, scored as in `ready` (listing, counts, a job's state); `ready` holds only the jobs without a group |
//! | `{prefix:queue}:gturns` | zset | group → turn: the groups with ready jobs, the lowest turn served next (a served group keeps its entry until a reserve finds it empty); absent: no group has ready jobs |
//! | `{prefix:queue}:glane` | hash | `u` → the turn of the jobs without a group (one lane), `n` → the last turn given |
//! | `{prefix:queue}:grun` | hash | group → its running jobs (a group's slot is its job's lease); absent: none running |
//! | `{prefix:queue}:glog:<group>` | zset | the group's last `gm` starts (score: time, member: `<member>:<reserve call>`), only while a group rate is set |
//! | `{prefix:queue}:glogs` | zset | group → its latest start: the groups with a `glog`, to forget those whose starts all left the window |
//! | `{prefix:queue}:gfull` | zset | group → when its full rate window opens (written by the start that filled it; an entry at or before now is stale) |
//! | `{prefix:queue}:gpark` | zset | group → when its window opens: groups with ready jobs taken out of `gturns` while their window is full |
//! | `{prefix:queue}:gpturn` | hash | group → its turn while parked, given back with it |
//! | `{prefix:queue}:gsort` | zset | scratch of the `groups` script (`queue_groups`): the queue's group keys, all scored 0 to walk them by bytes; deleted before the script returns |
//! | `{prefix:queue}:starts` | zset | the last `rm` starts (score: time, member: the lease entry), only while a rate limit is set |
//! | `{prefix:queue}:cron` | hash | schedule id → `revision,paused,next_fire,last_fire,runs,last job ref\|` then its definition as JSON, for the schedules whose jobs go to the queue |
//! | `{prefix:queue}:crondue` | zset | the queue's unpaused schedules that have a cursor, by next fire |
//!
//! Jobs are stored by column, one hash per field for the whole queue, so a batch of jobs costs
//! a handful of commands whatever its size. A job's state is not stored: it is the index
//! that holds it (`rl:<score>` or `ready`, `sched`, `lease`, `s:<state>`, `c:<bucket>`). The
//! lease set and the column hashes hold one marker entry (a member longer than Redis's
//! compact-encoding limit) that keeps them hash tables: batch lookups in a small listpack
//! are linear scans. A job ref,
//! `{prefix:queue}:j:<member>`, names a job in unique-key holders and script replies.
//!
//! A job's member is its sequence number, zero-padded to 16 digits. Its public [`JobId`] is
//! `sequence << 16 | queue index`, so ids increase in push order across queues, and `get`,
//! `cancel` and `retry` by id find the queue (and so the slot) without a cross-slot lookup.

use kosh_jobs_core::JobId;

// The history of the layouts. Layout 1 (before columns) kept one hash per job and had no `layout` key; layout 2 had no `again` set, so its jobs waiting for
// another attempt would be counted as on their first. Layout 3 had no worker in `run` entries
// (which older versions cannot read) and no attempt history: this version reads it as it is
// and upgrades its marker to 4 at connect (`UPGRADABLE`).
//
// Schedules (`cron`, `crondue`, `cronids`) came within layout 4: older versions of layout 4
// never read those keys (they store no schedules), and this one reads a prefix without them
// as one without schedules, so nothing is misread and the layout stays 4.
//
// Layout 5 leaves default fields out of a job's spec and writes its `run_at` relative to its
// `created_at` (see `spec`), which older versions would misread; its own specs of layout 4
// (all fields, `run_at` absolute) it reads as they are, so it upgrades a layout-4 prefix in
// place, like a layout-3 one.
//
// Layout 6 keeps the ready jobs that have a group outside `ready` (in `gall` and their
// group's `gready:<group>`) and counts each group's running jobs in `grun`. Older versions
// would not see those jobs, and their recovery or retry of one would put it in `ready` and
// leave its group's slot taken for good. A layout-5 prefix has no job with a group, so it
// reads as it is and is upgraded in place; processes of older versions then refuse it.
//
// The group rate (`gm`, `gp`, `glog:<group>`, `glogs`, `gfull`, `gpark`, `gpturn`) came
// within layout 6: a prefix without those keys is one without group rates, and nothing
// older versions read changed meaning. Older versions ignore the rate and cannot see the jobs
// of a parked group while it is parked (see the README): upgrade every process of a queue
// before setting a group rate on it.
//
// Layout 7 may add a seventh field to a job's spec, the length of its trace context (see
// `spec`), which older versions would misread (their scripts would lose its priority and
// unique key). Specs without a trace context are those of layout 6, byte for byte, so a
// layout-6 prefix reads as it is and is upgraded in place; older versions then refuse it.
//
// Layout 8 keeps the jobs pushed ready without a unique key or group on a single server in
// lists per ready score (`rl:<score>`, `rlp`), not in `ready`: about 100 bytes less memory
// a waiting job and fewer instructions to push and lease. Older versions would not see those
// jobs. It also writes a completed job's finish time into its `s:completed` entry
// (`<member>:<finished_at>`) instead of `fin`, which older versions would not find. A
// layout-7 prefix has no list, and its completed entries (the member alone, the time in
// `fin`) are read as they are, so it is upgraded in place; older versions then refuse it.
// Layout 9 keeps completed jobs in lists by the hundred ids (`c:<bucket>`, `cb`, `cn`), each
// entry holding the job's finish time and its `run` entry, instead of the sorted set
// `s:completed`; and a reserve call whose jobs are all on their first attempt writes one
// record (`rc`) instead of a `run` entry per job. A completed job takes some 180 bytes less,
// a running one 90. At connect, before the marker is rewritten, the completed jobs of an
// older layout (3 to 8) are moved into the lists, a chunk a script call (`migrate.lua`); its
// running jobs keep their `run` entries, which are read first. Older versions would not find
// the completed jobs nor the first attempts' runs: they refuse the prefix.

/// The storage layout this version writes under a prefix (the `{prefix}:layout` key): a
/// prefix of an older layout it can read is upgraded in place at connect, and a prefix of
/// any other layout is refused rather than misread (see the crate's README, "How jobs are
/// stored").
pub const LAYOUT: i64 = 9;

/// The older layouts this version upgrades: it reads their jobs as they are, but for the
/// completed ones, which it moves into its lists first; then it rewrites the marker.
pub(crate) const UPGRADABLE: &[i64] = &[3, 4, 5, 6, 7, 8];

/// Bits of a [`JobId`] that hold the queue index.
const QUEUE_BITS: u32 = 16;
/// The largest queue index.
pub(crate) const MAX_QUEUE_INDEX: u64 = (1 << QUEUE_BITS) - 1;
/// Sequence numbers must fit the 16-digit member.
const MAX_SEQ: u64 = 9_999_999_999_999_999;

/// Key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub(crate) fn new(prefix: &str, cluster: bool) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            cluster,
        }
    }

    /// The unique-key hash for jobs of `queue`: one for all queues on a single server (a
    /// unique key is unique across queues, as on the other backends); per queue on a cluster,
    /// where a script can only touch its queue's slot.
    pub(crate) fn unique(&self, queue: &str) -> String {
        if self.cluster {
            format!("{}:uniq", self.queue(queue))
        } else {
            format!("{{{}}}:uniq", self.prefix)
        }
    }

    /// The queue and member of a job ref (`{prefix:queue}:j:<member>`, made by the scripts).
    pub(crate) fn parse_job_key<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = key.strip_prefix('{')?.strip_prefix(self.prefix.as_str())?;
        let rest = rest.strip_prefix(':')?;
        let (queue, member) = rest.split_once("}:j:")?;
        Some((queue, member))
    }

    /// `{prefix}:queues`: queue name → index.
    pub(crate) fn queues(&self) -> String {
        format!("{{{}}}:queues", self.prefix)
    }

    /// `{prefix}:layout`: the storage layout the keys under the prefix use.
    pub(crate) fn layout(&self) -> String {
        format!("{{{}}}:layout", self.prefix)
    }

    /// `{prefix}:seq`: the global sequence counter.
    pub(crate) fn seq(&self) -> String {
        format!("{{{}}}:seq", self.prefix)
    }

    /// `{prefix}:workers`: worker id → last seen and info.
    pub(crate) fn workers(&self) -> String {
        format!("{{{}}}:workers", self.prefix)
    }

    /// `{prefix}:wexp`: worker ids by the end of their registration.
    pub(crate) fn worker_expiry(&self) -> String {
        format!("{{{}}}:wexp", self.prefix)
    }

    /// `{prefix}:cronids`: schedule id → the queue that holds it.
    pub(crate) fn schedule_index(&self) -> String {
        format!("{{{}}}:cronids", self.prefix)
    }

    /// `{prefix}:limited`: the queues with flow limits (a queue may stay a while after its
    /// limits are removed; readers check).
    pub(crate) fn limited(&self) -> String {
        format!("{{{}}}:limited", self.prefix)
    }

    /// `{prefix:queue}:lim`: a queue's flow limits.
    pub(crate) fn limits(&self, queue: &str) -> String {
        format!("{}:lim", self.queue(queue))
    }

    /// `{prefix:queue}:cron`: the schedules of a queue, by id.
    pub(crate) fn schedules(&self, queue: &str) -> String {
        format!("{}:cron", self.queue(queue))
    }

    /// `{prefix}:qnames`: index → queue name.
    pub(crate) fn queue_names(&self) -> String {
        format!("{{{}}}:qnames", self.prefix)
    }

    /// The key base of a queue, `{prefix:queue}`; the scripts derive every other key from it.
    pub(crate) fn queue(&self, queue: &str) -> String {
        format!("{{{}:{}}}", self.prefix, queue)
    }

    /// The wake-up list of a queue.
    pub(crate) fn wake(&self, queue: &str) -> String {
        format!("{}:wake", self.queue(queue))
    }
}

/// A job's position: its queue's index and its sequence within the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JobRef {
    pub(crate) queue_index: u16,
    pub(crate) seq: u64,
}

impl JobRef {
    /// Splits an id; `None` for ids this backend cannot have made.
    pub(crate) fn from_id(id: JobId) -> Option<JobRef> {
        let n = id.get();
        let queue_index = (n & MAX_QUEUE_INDEX) as u16;
        let seq = n >> QUEUE_BITS;
        (queue_index != 0 && seq != 0 && seq <= MAX_SEQ).then_some(JobRef { queue_index, seq })
    }

    /// From a queue index and a member string.
    pub(crate) fn from_member(queue_index: u16, member: &str) -> Option<JobRef> {
        JobRef::new(queue_index, member.parse().ok()?)
    }

    /// From a queue index and a sequence number, if the number is in range.
    pub(crate) fn new(queue_index: u16, seq: u64) -> Option<JobRef> {
        (seq != 0 && seq <= MAX_SEQ).then_some(JobRef { queue_index, seq })
    }

    /// The public id.
    pub(crate) fn id(self) -> JobId {
        JobId::new(self.seq << QUEUE_BITS | u64::from(self.queue_index))
    }

    /// The member string used in the queue's sets and job key.
    pub(crate) fn member(self) -> String {
        member(self.seq)
    }
}

/// The length of a member: every member has 16 digits.
pub(crate) const MEMBER_LEN: usize = 16;

/// The 16-digit member of a sequence number.
pub(crate) fn member(seq: u64) -> String {
    format!("{seq:016}")
}

/// The smallest sequence number whose id (in queue `queue_index`) is greater than `after`.
pub(crate) fn first_seq_after(after: Option<JobId>, queue_index: u16) -> u64 {
    match after {
        None => 1,
        Some(id) => {
            let n = id.get();
            let seq = n >> QUEUE_BITS;
            let idx = (n & MAX_QUEUE_INDEX) as u16;
            if queue_index > idx {
                seq.max(1)
            } else {
                seq + 1
            }
        }
    }
}

/// The largest sequence number whose id (in queue `queue_index`) is less than `before`
/// (`None`: no bound; `Some(0)`: no such number).
pub(crate) fn last_seq_before(before: Option<JobId>, queue_index: u16) -> Option<u64> {
    let n = before?.get();
    let seq = n >> QUEUE_BITS;
    let idx = (n & MAX_QUEUE_INDEX) as u16;
    Some(if queue_index < idx {
        seq
    } else {
        seq.saturating_sub(1)
    })
}

/// Checks a key prefix: 1 to 64 characters of ASCII letters, digits, `-`, `_`, `.` and `:`
/// (no braces, which would break the hash tags).
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 64 {
        return Err(format!(
            "key prefix `{prefix}` must be 1 to 64 characters long"
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "key prefix `{prefix}` contains `{c}`; use ASCII letters, digits, `-`, `_`, `.` or `:`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_by_sequence() {
        let a = JobRef {
            queue_index: 3,
            seq: 41,
        };
        let b = JobRef {
            queue_index: 1,
            seq: 42,
        };
        assert_eq!(JobRef::from_id(a.id()), Some(a));
        assert!(a.id() < b.id());
        assert_eq!(a.member(), "0000000000000041");
        assert_eq!(JobRef::from_member(3, "0000000000000041"), Some(a));
        assert_eq!(JobRef::from_id(JobId::new(0)), None);
        assert_eq!(JobRef::from_id(JobId::new(5)), None);
    }

    #[test]
    fn first_seq_after_respects_queue_index() {
        let id = JobRef {
            queue_index: 2,
            seq: 10,
        }
        .id();
        assert_eq!(first_seq_after(Some(id), 1), 11);
        assert_eq!(first_seq_after(Some(id), 2), 11);
        assert_eq!(first_seq_after(Some(id), 3), 10);
        assert_eq!(first_seq_after(None, 3), 1);
        assert_eq!(last_seq_before(Some(id), 1), Some(10));
        assert_eq!(last_seq_before(Some(id), 2), Some(9));
        assert_eq!(last_seq_before(Some(id), 3), Some(9));
        assert_eq!(last_seq_before(None, 3), None);
    }

    #[test]
    fn queue_keys_share_a_hash_tag() {
        let k = Keys::new("kosh", false);
        assert_eq!(
            k.parse_job_key("{kosh:mail}:j:0000000000000001"),
            Some(("mail", "0000000000000001"))
        );
        assert_eq!(k.parse_job_key("{other:mail}:j:1"), None);
        assert_eq!(k.unique("mail"), "{kosh}:uniq");
        assert_eq!(Keys::new("kosh", true).unique("mail"), "{kosh:mail}:uniq");
        assert_eq!(k.queue("mail"), "{kosh:mail}");
        assert_eq!(k.wake("mail"), "{kosh:mail}:wake");
        assert_eq!(k.queues(), "{kosh}:queues");
        assert_eq!(k.schedule_index(), "{kosh}:cronids");
        assert_eq!(k.limited(), "{kosh}:limited");
        assert_eq!(k.limits("mail"), "{kosh:mail}:lim");
        assert_eq!(k.schedules("mail"), "{kosh:mail}:cron");
        assert!(validate_prefix("a{b").is_err());
        assert!(validate_prefix("kosh:test-1").is_ok());
    }
}
