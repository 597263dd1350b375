-- kosh-jobs-postgres schema version 7: each job's trace context (`NewJob::trace`, a W3C
-- `traceparent` stored as the client gave it; see `kosh_jobs_core::trace`).
--
-- Existing jobs have none (NULL). Adding a nullable column without a default changes only the
-- catalog: no row is rewritten and the table is locked only for that moment. The leases taken
-- by turns (`reserve_turns`) read it by id after the function returns, so the function keeps
-- its signature.
ALTER TABLE __SCHEMA__.jobs ADD COLUMN trace text;
