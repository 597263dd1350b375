-- kosh-jobs-postgres schema version 6: a queue's groups in key order, as bytes, for the admin
-- listing `queue_groups`.
--
-- The listing pages through the groups of a queue by key (after the previous page's last key)
-- as Rust compares strings: by bytes, which is the "C" collation, not the database's own
-- (en_US and the like put "a" before "Z"). The indexes of version 4 order `grp` by the
-- database's collation, so neither they nor the `group_starts` primary key can give the next
-- key after another in byte order; without these, one page would sort every group of the
-- queue. With them, a page walks its keys one index probe each (a loose index scan):
--
-- - the groups with a ready or running job: one entry per such job, in key order;
-- - the groups with a start log: one entry per log, with its newest start, so that a log
--   that left the window (not yet deleted by a reserve) is passed over inside the index.
CREATE INDEX jobs_group_keys ON __SCHEMA__.jobs (queue, grp COLLATE "C")
    WHERE grp IS NOT NULL AND state IN ('ready', 'running');
CREATE INDEX group_starts_keys ON __SCHEMA__.group_starts (queue, grp COLLATE "C", last_at);
