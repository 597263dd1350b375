-- Who uploaded a statement (see src/user.rs and ../migrations/0003_import_user.sql).
ALTER TABLE imports ADD COLUMN user_id TEXT NOT NULL DEFAULT 'demo';
-- A queued import's `waiting_for`: the running import of its user.
CREATE INDEX imports_running_by_user ON imports (user_id, id) WHERE state = 'running';
