-- kosh-jobs-postgres schema version 1.
--
-- Applied by the backend itself, in one transaction holding `pg_advisory_xact_lock`, with
-- `__SCHEMA__` replaced by the backend's schema (default `kosh`). Times are milliseconds since
-- the Unix epoch, read from the backend's clock (so tests can move time by hand).

-- The hot table. fillfactor 70 leaves room in each page so that updates which touch no
-- indexed column (heartbeats, progress) are HOT: the new row version goes to the same page
-- and no index is written. No index covers `lease_expires_at`, `attempts`, `progress` or
-- `lease_token`, the columns that change on every attempt and heartbeat.
CREATE TABLE __SCHEMA__.jobs (
    -- Never reused: a sequence does not go back, even after deletes.
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text    NOT NULL,
    queue            text    NOT NULL,
    -- The payload as the client's JSON text, byte for byte.
    payload          text    NOT NULL,
    -- scheduled | ready | running | completed | failed | cancelled
    state            text    NOT NULL,
    priority         integer NOT NULL,
    run_at           bigint  NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    created_at       bigint  NOT NULL,
    started_at       bigint,
    -- Set exactly while the job is in a final state.
    finished_at      bigint,
    -- [{"attempt", "error", "at"}], oldest first; NULL when empty.
    errors           jsonb,
    progress         text,
    result           text,
    unique_key       text,
    -- A new value of `lease_tokens` for every lease.
    lease_token      bigint  NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    -- The worker of the latest attempt, and the attempts that ended other than by completing
    -- the job (at most 25, oldest first), as in kosh-jobs-sqlite.
    worker           text,
    history          jsonb
) WITH (fillfactor = 70);

-- Reserve: the next ready jobs of a queue, by priority then enqueue order.
CREATE INDEX jobs_ready ON __SCHEMA__.jobs (queue, priority DESC, id) WHERE state = 'ready';
-- Due scheduled jobs (claimable as ready), and the earliest run_at a waiting worker sleeps to.
CREATE INDEX jobs_scheduled ON __SCHEMA__.jobs (queue, run_at) WHERE state = 'scheduled';
-- Running jobs: few (bounded by the workers' concurrency); recovery filters their leases.
CREATE INDEX jobs_running ON __SCHEMA__.jobs (id) WHERE state = 'running';
-- Search and counts of final jobs per queue and state; purge and retention by finish time.
CREATE INDEX jobs_final ON __SCHEMA__.jobs (queue, state, id) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_finished ON __SCHEMA__.jobs (state, finished_at) WHERE finished_at IS NOT NULL;
-- At most one live job per unique key.
CREATE UNIQUE INDEX jobs_unique ON __SCHEMA__.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'ready', 'running');

-- Lease tokens: unique across the backend.
CREATE SEQUENCE __SCHEMA__.lease_tokens;

-- Paused queues: a row exists only while the queue is paused.
CREATE TABLE __SCHEMA__.paused_queues (
    name text PRIMARY KEY
);

-- Jobs of a queue that completed or failed per minute (its start, in ms), written by the
-- statement that ends them; minutes older than 7 days are deleted as new ones are written.
CREATE TABLE __SCHEMA__.throughput (
    queue     text   NOT NULL,
    minute    bigint NOT NULL,
    completed bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
);

-- Running workers (`info`: the JSON of WorkerInfo).
CREATE TABLE __SCHEMA__.workers (
    id         text   PRIMARY KEY,
    info       text   NOT NULL,
    last_seen  bigint NOT NULL,
    expires_at bigint NOT NULL
);

-- Schedules (periodic jobs), as in kosh-jobs-sqlite.
CREATE TABLE __SCHEMA__.schedules (
    id        text    PRIMARY KEY,
    def       text    NOT NULL,
    revision  bigint  NOT NULL,
    paused    boolean NOT NULL DEFAULT false,
    next_fire bigint,
    last_fire bigint,
    last_job  bigint,
    runs      bigint  NOT NULL DEFAULT 0
);
CREATE INDEX schedules_due ON __SCHEMA__.schedules (next_fire, id)
    WHERE NOT paused AND next_fire IS NOT NULL;

-- `history` with `attempt` appended, keeping the latest 25.
CREATE FUNCTION __SCHEMA__.append_attempt(history jsonb, attempt jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_array_length(h) > 25 THEN h - 0 ELSE h END
    FROM (SELECT coalesce(history, '[]'::jsonb) || jsonb_build_array(attempt) AS h) AS t
$$;
