-- How a statement was read (see ../migrations/0002_statement_reading.sql).
ALTER TABLE imports ADD COLUMN summary_lines_skipped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN date_order TEXT CHECK (date_order IN ('dmy', 'mdy'));
ALTER TABLE imports ADD COLUMN date_order_basis TEXT;
ALTER TABLE imports ADD COLUMN date_order_guessed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE imports ADD COLUMN layout TEXT;
