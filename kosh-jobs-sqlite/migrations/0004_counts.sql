-- kosh-jobs-sqlite schema version 4: the number of jobs per queue and state, kept as jobs
-- change, so counting a store of millions reads a few rows instead of an index of millions.
--
-- Applied after 0003 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 4`.
-- The counts of an existing file are built from its jobs once, here.

-- `n`: how many jobs of `queue` are stored in `state` (the stored state: a due scheduled job
-- is counted as scheduled here; readers move it to ready), except that running jobs are
-- counted in the `ready` row: reserving a job then changes no count, so the transaction of a
-- reserve writes nothing here. Readers count the running jobs (one per lease held) in their
-- index and subtract them. Every transaction that changes
-- jobs adds what it changed, one upsert per queue and state it touched, before it commits
-- (push, reserve, finish, release, lease recovery, the admin actions, purge, retention,
-- schedules firing). A count that falls to 0 keeps its row; readers skip it.
--
-- Not triggers on `kosh_jobs`: a trigger runs once per job changed, and measured on the
-- hot path it cost a batched push 2 to 4 times its time and draining 15%; the totals of a
-- transaction cost one statement per queue and state whatever its size.
CREATE TABLE kosh_counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;

INSERT INTO kosh_counts (queue, state, n)
    SELECT queue, CASE state WHEN 'running' THEN 'ready' ELSE state END AS counted, count(*)
    FROM kosh_jobs GROUP BY queue, counted;
