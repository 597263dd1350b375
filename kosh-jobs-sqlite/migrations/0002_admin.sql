-- kosh-jobs-sqlite schema version 2: what operators' tools read (the admin contract).
--
-- Applied after 0001 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 2`.
-- Existing jobs keep everything; they simply have no attempt history yet.

-- The attempt history (the latest 25 attempts, oldest first) is kept in two parts, so that
-- the hot path writes no JSON: leasing a job sets `worker` (with `attempts` and `started_at`,
-- which it sets anyway), and completing it writes nothing more.
-- - `worker`: the worker of the job's latest attempt. NULL before the first attempt (and for
--   jobs leased before schema version 2, which have no history).
-- - `history`: the attempts that ended, except one that completed the job, as a JSON array
--   of {"attempt", "started_at", "worker", "ended_at", "outcome", "error"}, at most 25,
--   oldest first; NULL when there are none. The statement that ends an attempt (retry, fail,
--   release, lease recovery, cancel) appends it, built from the columns.
-- A reader adds the latest attempt from the columns: still open while the job is `running`,
-- ended at `finished_at` with outcome "completed" when the job is `completed`.
ALTER TABLE kosh_jobs ADD COLUMN worker TEXT;
ALTER TABLE kosh_jobs ADD COLUMN history TEXT;

-- Search by state and queue: a page of one queue's jobs in one state, by id, is a range of
-- an index (every index entry ends with the id). Ready jobs: `kosh_jobs_ready`, one range
-- per priority; running jobs: few, through `kosh_jobs_running`. These two are partial, so
-- the hot path (push, reserve, complete) writes only one more index entry: the finished
-- job's.
CREATE INDEX kosh_jobs_final ON kosh_jobs (queue, state) WHERE finished_at IS NOT NULL;
CREATE INDEX kosh_jobs_scheduled_ids ON kosh_jobs (queue) WHERE state = 'scheduled';

-- Jobs of a queue that completed or failed per minute (`minute`: its start, in ms). Written
-- in the transaction that ends the job; minutes older than the retention (7 days) are
-- deleted when a queue's next minute is first written.
CREATE TABLE kosh_throughput (
    queue     TEXT    NOT NULL,
    minute    INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
) WITHOUT ROWID;

-- Running workers: what they registered (`info`: the JSON of `WorkerInfo`), when they last
-- refreshed it, and when it lapses without a refresh.
CREATE TABLE kosh_workers (
    id         TEXT    PRIMARY KEY,
    info       TEXT    NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
