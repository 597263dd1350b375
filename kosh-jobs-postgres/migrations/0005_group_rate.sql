-- kosh-jobs-postgres schema version 5: a rate limit per group (at most `group_rate_max`
-- starts of each group of a queue in any window of `group_rate_per_ms`).
--
-- Each group's sliding log is a row of `group_starts`, apart from its turn row: a turn row
-- goes when its group has no ready job, but the group's starts must still count when a new
-- job of it comes within the window. A reserve reads the log of a group it is about to serve
-- (one primary-key probe), appends to it when it leases one of the group's jobs, and forgets
-- the logs whose newest start left the window (a range of `group_starts_last`, each row
-- deleted once, so that cost is amortised over the starts that made it). A queue without a
-- group rate never reads or writes this table while reserving.

ALTER TABLE __SCHEMA__.queue_limits
    -- Both NULL: no group rate limit.
    ADD COLUMN group_rate_max integer CHECK (group_rate_max >= 1),
    ADD COLUMN group_rate_per_ms bigint CHECK (group_rate_per_ms >= 1),
    ADD CONSTRAINT queue_limits_group_rate_whole
        CHECK ((group_rate_max IS NULL) = (group_rate_per_ms IS NULL)),
    DROP CONSTRAINT queue_limits_something_set,
    ADD CONSTRAINT queue_limits_something_set CHECK (concurrency IS NOT NULL
        OR rate_max IS NOT NULL OR group_concurrency IS NOT NULL OR group_rate_max IS NOT NULL
        OR held_until IS NOT NULL);

-- The start log of one group of a queue under a group rate limit: the times (ms) of its last
-- `group_rate_max` starts, oldest first, and the newest of them (`last_at`), by which a log
-- that left the window is found. Kept while a start of it is inside the window (a reserve
-- deletes the others); all of a queue's logs go when its limits stop setting a group rate.
CREATE TABLE __SCHEMA__.group_starts (
    queue   text     NOT NULL,
    grp     text     NOT NULL,
    starts  bigint[] NOT NULL,
    last_at bigint   NOT NULL,
    PRIMARY KEY (queue, grp)
);
CREATE INDEX group_starts_last ON __SCHEMA__.group_starts (queue, last_at);

-- Whether a sliding log `p_starts` is full at `p_now` under `p_max` starts per `p_per` ms:
-- a start at t counts while p_now - p_per < t (as `RateLimit::room` counts).
CREATE FUNCTION __SCHEMA__.rate_full(
    p_starts bigint[], p_max integer, p_per bigint, p_now bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (SELECT count(*) FROM unnest(p_starts) AS s(t) WHERE s.t > p_now - p_per) >= p_max
$$;

-- When a full log opens again: `p_per` after the oldest of its last `p_max` starts (the log
-- is oldest first; a longer one, left by a lowered limit, counts only those).
CREATE FUNCTION __SCHEMA__.rate_opens(
    p_starts bigint[], p_max integer, p_per bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_starts[greatest(cardinality(p_starts) - p_max + 1, 1)] + p_per
$$;

-- The functions of version 4 take new arguments: replaced, not overloaded.
DROP FUNCTION __SCHEMA__.reserve_turns(text[], bigint[], bigint[], integer, bigint, bigint, text);
DROP FUNCTION __SCHEMA__.next_in_turn(text, bigint);

-- The next job of `p_queue` by its turns at `p_now`, locked (`FOR UPDATE SKIP LOCKED`), with
-- its lane (o_grp: its group, '' for none); all NULL when none may start. The lane without a
-- group goes first when its turn is not after the first servable group's. A group at its
-- concurrency limit (`p_cap` running jobs; NULL: no limit) or with a full rate window
-- (`p_rate_max` starts in `p_rate_per` ms; NULL: no limit) is skipped; a group without a
-- ready job loses its turn row. Without turn rows: the head of the jobs without a group.
CREATE FUNCTION __SCHEMA__.next_in_turn(
    p_queue text, p_cap bigint, p_rate_max integer, p_rate_per bigint, p_now bigint,
    OUT o_id bigint, OUT o_priority integer, OUT o_grp text)
LANGUAGE plpgsql AS $$
DECLARE
    u_turn bigint;
    t_turn bigint := -1;
    t_grp  text := '';
    g_id   bigint;
    g_pri  integer;
BEGIN
    SELECT j.id, j.priority INTO o_id, o_priority FROM __SCHEMA__.jobs j
     WHERE j.state = 'ready' AND j.grp IS NULL AND j.queue = p_queue
     ORDER BY j.priority DESC, j.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    o_grp := CASE WHEN o_id IS NULL THEN NULL ELSE '' END;
    SELECT t.turn INTO u_turn FROM __SCHEMA__.turns t WHERE t.queue = p_queue AND t.grp = '';
    u_turn := coalesce(u_turn, 0);
    LOOP
        SELECT t.turn, t.grp INTO t_turn, t_grp FROM __SCHEMA__.turns t
         WHERE t.queue = p_queue AND t.grp <> '' AND (t.turn, t.grp) > (t_turn, t_grp)
         ORDER BY t.turn, t.grp LIMIT 1 FOR UPDATE SKIP LOCKED;
        EXIT WHEN NOT FOUND;
        -- The jobs without a group have the earlier turn.
        EXIT WHEN o_id IS NOT NULL AND u_turn <= t_turn;
        CONTINUE WHEN p_cap IS NOT NULL AND (
            SELECT count(*) FROM (
                SELECT 1 FROM __SCHEMA__.jobs j
                 WHERE j.state = 'running' AND j.grp IS NOT NULL AND j.queue = p_queue
                   AND j.grp = t_grp LIMIT p_cap) r) >= p_cap;
        -- A separate IF, so that a queue without a group rate never reads the logs. A group
        -- with a full window and no ready job left loses its row now, as below, so that the
        -- walk does not pass it again until its window opens.
        IF p_rate_max IS NOT NULL THEN
            IF EXISTS (SELECT 1 FROM __SCHEMA__.group_starts s
                        WHERE s.queue = p_queue AND s.grp = t_grp
                          AND __SCHEMA__.rate_full(s.starts, p_rate_max, p_rate_per, p_now))
            THEN
                IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobs j
                                WHERE j.state = 'ready' AND j.grp IS NOT NULL
                                  AND j.queue = p_queue AND j.grp = t_grp) THEN
                    DELETE FROM __SCHEMA__.turns t WHERE t.queue = p_queue AND t.grp = t_grp;
                END IF;
                CONTINUE;
            END IF;
        END IF;
        SELECT j.id, j.priority INTO g_id, g_pri FROM __SCHEMA__.jobs j
         WHERE j.state = 'ready' AND j.grp IS NOT NULL AND j.queue = p_queue AND j.grp = t_grp
         ORDER BY j.priority DESC, j.id LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            o_id := g_id;
            o_priority := g_pri;
            o_grp := t_grp;
            RETURN;
        END IF;
        -- Its ready jobs may all be locked by someone else (a cancel): keep the row then.
        IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobs j
                        WHERE j.state = 'ready' AND j.grp IS NOT NULL AND j.queue = p_queue
                          AND j.grp = t_grp) THEN
            DELETE FROM __SCHEMA__.turns t WHERE t.queue = p_queue AND t.grp = t_grp;
        END IF;
    END LOOP;
END
$$;

-- Leases up to `p_max` jobs of `p_queues` (sorted by name, unpaused), at most `p_rooms[i]`
-- of queue i, its groups capped at `p_caps[i]` running jobs and `p_rate_maxes[i]` starts per
-- `p_rate_pers[i]` ms (NULL: no such limit), at `p_now` until `p_expires` for `p_worker`.
-- Each step takes the best head (priority, then id) among the queues' next jobs by their
-- turns, leases it, logs the start in its group's log under a group rate, and sends its
-- lane to the back. Returns the leased jobs.
CREATE FUNCTION __SCHEMA__.reserve_turns(
    p_queues text[], p_rooms bigint[], p_caps bigint[], p_rate_maxes integer[],
    p_rate_pers bigint[], p_max integer, p_now bigint, p_expires bigint, p_worker text)
RETURNS TABLE (r_id bigint, r_token bigint, r_name text, r_queue text, r_payload text,
               r_priority integer, r_attempts integer, r_max_attempts integer,
               r_created_at bigint, r_progress text)
LANGUAGE plpgsql AS $$
DECLARE
    n      integer := coalesce(cardinality(p_queues), 0);
    rooms  bigint[] := p_rooms;
    h_id   bigint[];
    h_pri  integer[];
    h_grp  text[];
    done   boolean[];
    best   integer;
    taken  integer := 0;
    nt     bigint;
    nx     record;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    h_id := array_fill(NULL::bigint, ARRAY[n]);
    h_pri := array_fill(NULL::integer, ARRAY[n]);
    h_grp := array_fill(NULL::text, ARRAY[n]);
    done := array_fill(false, ARRAY[n]);
    -- The lane without a group of each queue with groups, made first and in name order, so
    -- that reservers waiting on each other's new rows cannot wait in a cycle.
    INSERT INTO __SCHEMA__.turns (queue, grp, turn)
    SELECT q, '', 0 FROM unnest(p_queues) AS q
     WHERE EXISTS (SELECT 1 FROM __SCHEMA__.turns t WHERE t.queue = q AND t.grp <> '')
     ORDER BY q ON CONFLICT DO NOTHING;
    WHILE taken < p_max LOOP
        best := 0;
        FOR i IN 1..n LOOP
            CONTINUE WHEN done[i] OR rooms[i] <= 0;
            IF h_id[i] IS NULL THEN
                SELECT * INTO nx FROM __SCHEMA__.next_in_turn(
                    p_queues[i], p_caps[i], p_rate_maxes[i], p_rate_pers[i], p_now);
                IF nx.o_id IS NULL THEN
                    done[i] := true;
                    CONTINUE;
                END IF;
                h_id[i] := nx.o_id;
                h_pri[i] := nx.o_priority;
                h_grp[i] := nx.o_grp;
            END IF;
            IF best = 0 OR h_pri[i] > h_pri[best]
               OR (h_pri[i] = h_pri[best] AND h_id[i] < h_id[best]) THEN
                best := i;
            END IF;
        END LOOP;
        EXIT WHEN best = 0;
        UPDATE __SCHEMA__.jobs j SET state = 'running', attempts = j.attempts + 1,
               lease_token = nextval('__SCHEMA__.lease_tokens'), started_at = p_now,
               lease_expires_at = p_expires, worker = p_worker, lease_started = false
         WHERE j.id = h_id[best]
        RETURNING j.id, j.lease_token, j.name, j.queue, j.payload, j.priority, j.attempts,
                  j.max_attempts, j.created_at, j.progress
             INTO r_id, r_token, r_name, r_queue, r_payload, r_priority, r_attempts,
                  r_max_attempts, r_created_at, r_progress;
        RETURN NEXT;
        -- The group's log gets the start, keeping its last `max`. Only this reserver writes
        -- it: it holds the group's turn row, and the queue's limits row, locked.
        IF h_grp[best] <> '' AND p_rate_maxes[best] IS NOT NULL THEN
            INSERT INTO __SCHEMA__.group_starts AS s (queue, grp, starts, last_at)
            VALUES (p_queues[best], h_grp[best], ARRAY[p_now], p_now)
            ON CONFLICT (queue, grp) DO UPDATE
               SET starts = (s.starts || p_now)
                     [greatest(cardinality(s.starts) + 2 - p_rate_maxes[best], 1):],
                   last_at = p_now;
        END IF;
        -- The lane served goes to the back of the line. The row of a group is ours (locked
        -- by next_in_turn); the lane without a group moves only if no other reserver holds
        -- its row (it is serving that lane too).
        SELECT coalesce(max(t.turn), 0) + 1 INTO nt FROM __SCHEMA__.turns t
         WHERE t.queue = p_queues[best];
        IF h_grp[best] = '' THEN
            UPDATE __SCHEMA__.turns t SET turn = nt
             WHERE (t.queue, t.grp) IN (SELECT s.queue, s.grp FROM __SCHEMA__.turns s
                                         WHERE s.queue = p_queues[best] AND s.grp = ''
                                         FOR UPDATE SKIP LOCKED);
        ELSE
            UPDATE __SCHEMA__.turns t SET turn = nt
             WHERE t.queue = p_queues[best] AND t.grp = h_grp[best];
        END IF;
        rooms[best] := rooms[best] - 1;
        h_id[best] := NULL;
        taken := taken + 1;
    END LOOP;
    -- A queue left without groups loses its lane row: its next reserve is the plain claim.
    DELETE FROM __SCHEMA__.turns t
     WHERE (t.queue, t.grp) IN (
        SELECT s.queue, s.grp FROM __SCHEMA__.turns s
         WHERE s.grp = '' AND s.queue = ANY(p_queues)
           AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.turns g
                            WHERE g.queue = s.queue AND g.grp <> '')
         FOR UPDATE SKIP LOCKED);
END
$$;
