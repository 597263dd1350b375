-- kosh-jobs-sqlite schema version 5: whether the current lease's attempt was seen to start,
-- and how many leases of a job expired before their attempt started.
--
-- Applied after 0004 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 5`.
--
-- A worker leases a job, then tells the store that its handler started with a first lease
-- renewal (at most `START_ACK_DELAY` later). A lease that expires without it gives its
-- attempt back (the worker died before the handler ran), up to `MAX_UNSTARTED_EXPIRIES`
-- times per job: a job allowed one attempt does not end failed without having run.
ALTER TABLE kosh_jobs ADD COLUMN lease_started INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kosh_jobs ADD COLUMN unstarted INTEGER NOT NULL DEFAULT 0;
-- Leases held across the upgrade were taken by workers that did not tell: count them as
-- started, as the earlier version did.
UPDATE kosh_jobs SET lease_started = 1 WHERE state = 'running';
