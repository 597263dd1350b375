-- kosh-jobs-postgres schema version 3: flow control (per-queue concurrency and rate limits).
--
-- A row exists only while the queue has limits, so a reserve on a queue without limits
-- pays one primary-key probe of a (usually empty) table. `starts` is the sliding log of the
-- rate limit: the times (ms) of the last `rate_max` starts, oldest first; empty without a
-- rate limit. A reserve on a limited queue locks the queue's row (`FOR UPDATE`), which
-- serializes the reserves of that queue across processes.
CREATE TABLE __SCHEMA__.queue_limits (
    name        text     PRIMARY KEY,
    -- At most this many jobs of the queue running at once; NULL: no concurrency limit.
    concurrency bigint   CHECK (concurrency >= 1),
    -- At most `rate_max` starts in any window of `rate_per_ms`; both NULL: no rate limit.
    rate_max    integer  CHECK (rate_max >= 1),
    rate_per_ms bigint   CHECK (rate_per_ms >= 1),
    starts      bigint[] NOT NULL DEFAULT '{}',
    CHECK ((rate_max IS NULL) = (rate_per_ms IS NULL)),
    CHECK (concurrency IS NOT NULL OR rate_max IS NOT NULL)
);
