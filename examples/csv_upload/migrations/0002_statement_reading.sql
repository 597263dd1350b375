-- How a statement was read: summary and footer lines skipped (never imported, never
-- rejected), the order of day and month in its `a/b/yyyy` dates and whether that order was
-- a guess (no date in the file settled it), and the bank layout recognised.
ALTER TABLE imports ADD COLUMN summary_lines_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN date_order TEXT CHECK (date_order IN ('dmy', 'mdy'));
ALTER TABLE imports ADD COLUMN date_order_basis TEXT;
ALTER TABLE imports ADD COLUMN date_order_guessed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN layout TEXT;
