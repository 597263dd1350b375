-- kosh-jobs-sqlite schema version 7: groups (round-robin turns between the groups of a
-- queue, a per-group concurrency limit) and queue holds (see `kosh_jobs_core::limits`).
--
-- Applied after 0006 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 7`.
-- Existing jobs have no group: they stay in the ready index they were in, in the same order.

-- The job's group key (`NewJob::group`); NULL: no group.
ALTER TABLE kosh_jobs ADD COLUMN grp TEXT;

-- The ready jobs without a group, by priority then enqueue order: what a reserve of a queue
-- without groups reads, as before. Rebuilt partial on `grp IS NULL`, so that a queue's
-- ungrouped lane is one range however many grouped jobs wait beside it.
DROP INDEX kosh_jobs_ready;
CREATE INDEX kosh_jobs_ready ON kosh_jobs (queue, priority DESC, id)
    WHERE state = 'ready' AND grp IS NULL;

-- The ready jobs of each group, by priority then enqueue order: the head of a group is one
-- seek. Also how readers find a queue's groups with ready jobs (one seek per group).
CREATE INDEX kosh_jobs_ready_grouped ON kosh_jobs (queue, grp, priority DESC, id)
    WHERE state = 'ready' AND grp IS NOT NULL;

-- The due grouped scheduled jobs of a queue: the groups a promotion makes ready get their
-- turn rows from here, before the promotion (empty, and never written, for jobs without a
-- group).
CREATE INDEX kosh_jobs_scheduled_grouped ON kosh_jobs (queue, run_at, grp)
    WHERE state = 'scheduled' AND grp IS NOT NULL;

-- The running jobs of each group: a group's slots under `group_concurrency` are counted here,
-- one entry per lease, so whatever ends a lease (finish, release, cancel, recovery) frees
-- its slot with no bookkeeping.
CREATE INDEX kosh_jobs_running_grouped ON kosh_jobs (queue, grp)
    WHERE state = 'running' AND grp IS NOT NULL;

-- The turns of a queue's lanes: the lane with the lowest `turn` (then the lowest key) gives
-- the next job. `grp` is a group key, or '' (never a valid key) for the jobs without a group.
-- - A group gets a row, with turn 0, when one of its jobs becomes ready, written by the
--   statement's caller on every way into `ready` (push, promotion, retry, snooze, release,
--   lease recovery, the admin retry and promote): a group new to the queue goes first, once.
--   Not a trigger: a trigger on `kosh_jobs` runs for every job, grouped or not, and makes
--   every insert and update of the hot path keep a statement journal (measured: about 1 us
--   more per statement, 3 us per job).
-- - A lane that gives a job moves to the back: turn = max(turn) + 1.
-- - A row whose lane has no ready job left is deleted by the reserve that finds it so, not
--   before: a group served its last job keeps its place at the back if a new job arrives.
-- - The lane of the jobs without a group gets its row from a reserve, and only while the
--   queue has groups: a queue that never had a grouped job has no rows and reserves as before.
CREATE TABLE kosh_turns (
    queue TEXT    NOT NULL,
    grp   TEXT    NOT NULL,
    turn  INTEGER NOT NULL,
    PRIMARY KEY (queue, grp)
) WITHOUT ROWID;
CREATE INDEX kosh_turns_order ON kosh_turns (queue, turn, grp);

-- At most so many running jobs per group; NULL: no limit.
ALTER TABLE kosh_limits ADD COLUMN group_concurrency INTEGER;
-- No job of the queue is leased before this time (ms); NULL: no hold. The row of a queue
-- stays while it has a limit or a hold in force.
ALTER TABLE kosh_limits ADD COLUMN held_until INTEGER;
