-- Who uploaded a statement (see src/user.rs): imports run one at a time per user. Imports
-- made before users existed belong to the user 'demo', the default of an upload naming none.
ALTER TABLE imports ADD COLUMN user_id TEXT NOT NULL DEFAULT 'demo';
-- A queued import's `waiting_for`: the running import of its user.
CREATE INDEX imports_running_by_user ON imports (user_id, id) WHERE state = 'running';
