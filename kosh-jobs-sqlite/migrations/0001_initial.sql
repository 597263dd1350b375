-- kosh-jobs-sqlite schema version 1.
--
-- Applied by the backend itself inside `BEGIN IMMEDIATE`, then `PRAGMA user_version = 1`.
-- Times are milliseconds since the Unix epoch, read from the backend's clock.

CREATE TABLE kosh_jobs (
    -- Assigned by the backend: max(max(id), kosh_meta.id_floor) + 1, so an id is never
    -- reused even after the newest job was deleted (cheaper than AUTOINCREMENT, which
    -- writes sqlite_sequence on every insert).
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    -- scheduled | ready | running | completed | failed | cancelled
    state            TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    -- Set exactly while the job is in a final state.
    finished_at      INTEGER,
    -- JSON array of {"attempt", "error", "at"}, oldest first; NULL when empty.
    errors           TEXT,
    progress         TEXT,
    result           TEXT,
    unique_key       TEXT,
    -- A new random token for every lease: a finish carrying another token changes nothing.
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER
);

-- Reserve: the next ready jobs of a queue, by priority then enqueue order. Partial, so a row
-- is in it only while ready and finished jobs cost no index upkeep here.
CREATE INDEX kosh_jobs_ready ON kosh_jobs (queue, priority DESC, id) WHERE state = 'ready';

-- Promotion of due scheduled jobs, and the earliest run_at a waiting worker sleeps until.
CREATE INDEX kosh_jobs_scheduled ON kosh_jobs (queue, run_at) WHERE state = 'scheduled';

-- Recovery of expired leases.
CREATE INDEX kosh_jobs_running ON kosh_jobs (lease_expires_at) WHERE state = 'running';

-- Retention and purge of finished jobs.
CREATE INDEX kosh_jobs_finished ON kosh_jobs (state, finished_at) WHERE finished_at IS NOT NULL;

-- At most one live job per unique key.
CREATE UNIQUE INDEX kosh_jobs_unique ON kosh_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'ready', 'running');

-- Queues with a setting; today only "paused". A row exists only while the queue is paused.
CREATE TABLE kosh_queues (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;

-- Settings of the database. `id_floor`: the highest job id ever deleted (raised before every
-- delete), so new ids stay above it.
CREATE TABLE kosh_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO kosh_meta (key, value) VALUES ('id_floor', 0);
