-- kosh-jobs-sqlite schema version 9: each job's trace context (`NewJob::trace`, a W3C
-- `traceparent` stored as the client gave it; see `kosh_jobs_core::trace`).
--
-- Applied after 0008 inside the same `BEGIN IMMEDIATE`, then `PRAGMA user_version = 9`.
-- Existing jobs have none (NULL); adding a nullable column without a default rewrites no row.
ALTER TABLE kosh_jobs ADD COLUMN trace TEXT;
