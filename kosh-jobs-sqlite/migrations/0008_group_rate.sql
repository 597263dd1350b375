-- kosh-jobs-sqlite schema version 8: a rate limit per group (`QueueLimits::group_rate`, see
-- `kosh_jobs_core::limits`).
--
-- Applied after 0007 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 8`.
-- Existing queues get no group rate (both columns NULL): nothing else changes for them.

-- At most group_rate_max starts of each group in any window of group_rate_per_ms; both
-- NULL: no group rate limit.
ALTER TABLE kosh_limits ADD COLUMN group_rate_max INTEGER;
ALTER TABLE kosh_limits ADD COLUMN group_rate_per_ms INTEGER;

-- The start log of each group of the queues with a group rate: one row per grouped job
-- leased (a table with rowids, as `kosh_starts`: two starts of a group in one millisecond,
-- which one reserve may make, are two rows). Rows only while the queue has a group rate
-- (setting limits without one deletes them). Independent of the jobs: a group with no job
-- left keeps its log, so a new job of it within the window is still limited.
-- - A reserve reads a candidate group's starts in the window, newest first, at most
--   `group_rate_max` entries of `kosh_group_starts_log`: one seek.
-- - Each reserve that logs starts of a queue first deletes its starts that left the window
--   (a range of `kosh_group_starts_age`), whatever their group: each row is deleted once,
--   so the upkeep is constant per start and the table holds only the window's starts.
CREATE TABLE kosh_group_starts (
    queue TEXT    NOT NULL,
    grp   TEXT    NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX kosh_group_starts_log ON kosh_group_starts (queue, grp, at);
CREATE INDEX kosh_group_starts_age ON kosh_group_starts (queue, at);
