-- kosh-jobs-sqlite schema version 6: flow control (per-queue limits, see
-- `kosh_jobs_core::limits`).
--
-- Applied after 0005 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 6`.

-- The limits of a queue; a row exists only while the queue has one. Read once per queue by
-- each reserve (a primary-key look-up): a queue without a row costs nothing more.
CREATE TABLE kosh_limits (
    queue       TEXT PRIMARY KEY,
    concurrency INTEGER,          -- at most so many running jobs of the queue; NULL: no limit
    rate_max    INTEGER,          -- at most rate_max starts in any window of rate_per_ms;
    rate_per_ms INTEGER           -- both NULL: no rate limit
) WITHOUT ROWID;

-- The start log of the rate-limited queues: one row per job leased, kept while it is inside
-- the queue's window (a reserve deletes the older ones), so a queue holds at most about
-- `rate_max` rows. Rows only while the queue has a rate limit.
CREATE TABLE kosh_starts (
    queue TEXT    NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX kosh_starts_queue_at ON kosh_starts (queue, at);
