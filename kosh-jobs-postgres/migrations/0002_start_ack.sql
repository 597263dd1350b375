-- kosh-jobs-postgres schema version 2: whether the current lease's attempt was seen to start,
-- and how many leases of a job expired before their attempt started (as in kosh-jobs-sqlite).
--
-- A worker leases a job, then tells the store that its handler started with a first lease
-- renewal (at most `START_ACK_DELAY` later). A lease that expires without it gives its
-- attempt back (the worker died before the handler ran), up to `MAX_UNSTARTED_EXPIRIES`
-- times per job. Neither column is indexed: heartbeats stay HOT updates.
ALTER TABLE __SCHEMA__.jobs
    ADD COLUMN lease_started boolean NOT NULL DEFAULT false,
    ADD COLUMN unstarted integer NOT NULL DEFAULT 0;
-- Leases held across the upgrade were taken by workers that did not tell: count them as
-- started, as the earlier version did.
UPDATE __SCHEMA__.jobs SET lease_started = true WHERE state = 'running';
