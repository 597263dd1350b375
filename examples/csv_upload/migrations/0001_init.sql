-- The app's own tables. The job framework keeps its jobs in its own store (JOBS_URL).

-- One uploaded statement and its import: the equivalent of a `BackgroundJob` row.
CREATE TABLE imports (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name         TEXT    NOT NULL,            -- the client's name, for display only
    stored_name       TEXT    NOT NULL UNIQUE,     -- generated; the file in UPLOAD_DIR
    sha256            TEXT    NOT NULL,
    size_bytes        INTEGER NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    job_id            TEXT,                         -- the kosh-jobs job id
    rows_total        INTEGER,                      -- known after the first pass
    rows_done         INTEGER NOT NULL DEFAULT 0,   -- imported + rejected, committed
    rows_imported     INTEGER NOT NULL DEFAULT 0,
    rows_rejected     INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,   -- handler runs that started
    resumed_from      INTEGER,                      -- rows_done when a later attempt resumed
    checkpoint_byte   INTEGER,                      -- where the next row starts
    checkpoint_line   INTEGER,
    checkpoint_record INTEGER,
    error             TEXT,
    created_at        TEXT    NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    updated_at        TEXT    NOT NULL
);

-- The same content cannot be imported twice while an earlier import of it is live or done;
-- a failed import leaves the index, so the file can be uploaded again.
CREATE UNIQUE INDEX imports_sha256_live ON imports (sha256) WHERE state != 'failed';
CREATE INDEX imports_created ON imports (created_at);

CREATE TABLE transactions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id    INTEGER NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line         INTEGER NOT NULL,   -- where the row starts in the file
    booked_on    TEXT    NOT NULL,   -- YYYY-MM-DD
    description  TEXT    NOT NULL,
    amount_cents INTEGER NOT NULL,
    UNIQUE (import_id, line)         -- a row imported twice is one transaction
);

CREATE TABLE rejected_rows (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id INTEGER NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line      INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    raw       TEXT    NOT NULL,
    UNIQUE (import_id, line)
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    import_id  INTEGER REFERENCES imports (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('import_completed', 'import_failed')),
    message    TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    read_at    TEXT,
    UNIQUE (import_id, kind)         -- one notice per outcome, however often it is reached
);
CREATE INDEX notifications_unread ON notifications (read_at, id);
