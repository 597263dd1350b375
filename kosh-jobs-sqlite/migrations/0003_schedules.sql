-- kosh-jobs-sqlite schema version 3: schedules (periodic jobs, `kosh_jobs::schedule`).
--
-- Applied after 0002 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 3`.
-- Nothing existing changes.

-- One row per schedule:
-- - `def`: the definition, the JSON text of `ScheduleDef` (what an upsert compares);
-- - `revision`: grows by one each time the definition changes;
-- - `next_fire`: the cursor, the next tick in ms (NULL once the schedule has ended);
-- - `last_fire`, `last_job`: the last tick fired and its job (the overlap check reads it);
-- - `runs`: ticks fired so far.
-- Firing a tick is one transaction: the cursor is compared and moved and the job inserted
-- together, so any number of processes fire each tick once.
CREATE TABLE kosh_schedules (
    id        TEXT    PRIMARY KEY,
    def       TEXT    NOT NULL,
    revision  INTEGER NOT NULL,
    paused    INTEGER NOT NULL DEFAULT 0,
    next_fire INTEGER,
    last_fire INTEGER,
    last_job  INTEGER,
    runs      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- The schedules that can fire, by cursor: what a worker reads once a minute.
CREATE INDEX kosh_schedules_due ON kosh_schedules (next_fire, id)
    WHERE NOT paused AND next_fire IS NOT NULL;
