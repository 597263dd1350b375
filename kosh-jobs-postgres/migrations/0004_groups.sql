-- kosh-jobs-postgres schema version 4: groups (round-robin turns between the groups of a
-- queue, a per-group concurrency limit) and holds.
--
-- The cost per reserve stays O(log n) in jobs and groups: a reserve walks the queue's turn
-- rows in turn order, skipping only groups at their limit (at most as many as running jobs)
-- and deleting the rows of groups it finds without a ready job (each such row is deleted
-- once, so that cost is amortised over the pushes that made it). A queue with no turn row
-- reserves through the one claim statement of earlier versions.

-- The group of a job; NULL: none.
ALTER TABLE __SCHEMA__.jobs ADD COLUMN grp text;

-- The ready index of earlier versions, now only for the jobs without a group (every job of an
-- existing schema has none, so their order is unchanged), and one for the grouped jobs in
-- each group's lease order.
DROP INDEX __SCHEMA__.jobs_ready;
CREATE INDEX jobs_ready ON __SCHEMA__.jobs (queue, priority DESC, id)
    WHERE state = 'ready' AND grp IS NULL;
CREATE INDEX jobs_ready_grouped ON __SCHEMA__.jobs (queue, grp, priority DESC, id)
    WHERE state = 'ready' AND grp IS NOT NULL;
-- A group's running jobs: its slots under a group concurrency limit are their leases.
CREATE INDEX jobs_running_grouped ON __SCHEMA__.jobs (queue, grp)
    WHERE state = 'running' AND grp IS NOT NULL;
-- Due scheduled grouped jobs, which a reserve makes ready (so that they take turns).
CREATE INDEX jobs_scheduled_grouped ON __SCHEMA__.jobs (queue, run_at)
    WHERE state = 'scheduled' AND grp IS NOT NULL;

-- The turns of a queue's lanes: a row per group that may have ready jobs (made when one of
-- its jobs becomes ready, by the trigger below; deleted by a reserve that finds the group
-- without one), and while the queue has such rows, one with grp = '' for its jobs without a
-- group (an empty key is never a valid group). The lowest turn goes next; a lane served goes
-- to the back (the queue's highest turn + 1); a new group starts at 0, ahead of the others,
-- once. A reserve serving a group holds its row locked (`FOR UPDATE`) until it commits;
-- other reservers skip the row (`SKIP LOCKED`): that group is being served.
CREATE TABLE __SCHEMA__.turns (
    queue text   NOT NULL,
    grp   text   NOT NULL,
    turn  bigint NOT NULL,
    PRIMARY KEY (queue, grp)
);
CREATE INDEX turns_order ON __SCHEMA__.turns (queue, turn, grp);

-- A grouped job became ready: its group gets a turn row if it has none, and the row is held
-- with a share lock until the transaction commits. A reserve deletes a row only while holding
-- it locked `FOR UPDATE` and seeing no ready job in the group, so the lock closes the race
-- between "found empty" and "a job became ready": either the reserve sees the job, or the
-- row it deleted is made again here. Share locks never wait for each other, so pushes and
-- finishes in any order cannot deadlock on them.
CREATE FUNCTION __SCHEMA__.group_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        INSERT INTO __SCHEMA__.turns (queue, grp, turn) VALUES (NEW.queue, NEW.grp, 0)
            ON CONFLICT DO NOTHING;
        PERFORM 1 FROM __SCHEMA__.turns WHERE queue = NEW.queue AND grp = NEW.grp FOR SHARE;
        -- Not found: a reserve deleted the row after this insert saw it; make it again.
        EXIT WHEN FOUND;
    END LOOP;
    RETURN NULL;
END
$$;
-- Every way into `ready`: push, promotion of due scheduled jobs, retry, release, recovery,
-- snooze, admin retry and promote.
CREATE TRIGGER jobs_group_ready_insert AFTER INSERT ON __SCHEMA__.jobs
    FOR EACH ROW WHEN (NEW.grp IS NOT NULL AND NEW.state = 'ready')
    EXECUTE FUNCTION __SCHEMA__.group_ready();
CREATE TRIGGER jobs_group_ready_update AFTER UPDATE OF state ON __SCHEMA__.jobs
    FOR EACH ROW WHEN (NEW.grp IS NOT NULL AND NEW.state = 'ready' AND OLD.state <> 'ready')
    EXECUTE FUNCTION __SCHEMA__.group_ready();

-- The next job of `p_queue` by its turns, locked (`FOR UPDATE SKIP LOCKED`), with its lane
-- (o_grp: its group, '' for none); all NULL when none may start. The lane without a group
-- goes first when its turn is not after the first servable group's. A group at its limit
-- (`p_cap` running jobs; NULL: no limit) is skipped; a group without a ready job loses its
-- row. Without turn rows: the head of the jobs without a group.
CREATE FUNCTION __SCHEMA__.next_in_turn(
    p_queue text, p_cap bigint,
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
-- of queue i, its groups capped at `p_caps[i]` running jobs (NULL: no cap), at `p_now` until
-- `p_expires` for `p_worker`. Each step takes the best head (priority, then id) among the
-- queues' next jobs by their turns, leases it and sends its lane to the back. Returns the
-- leased jobs.
CREATE FUNCTION __SCHEMA__.reserve_turns(
    p_queues text[], p_rooms bigint[], p_caps bigint[], p_max integer,
    p_now bigint, p_expires bigint, p_worker text)
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
                SELECT * INTO nx FROM __SCHEMA__.next_in_turn(p_queues[i], p_caps[i]);
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

-- Flow control: a per-group concurrency limit, and holds. A row now exists while the queue
-- has limits or a hold (an ended hold's row is deleted by the next reserve that locks it).
ALTER TABLE __SCHEMA__.queue_limits
    ADD COLUMN group_concurrency bigint CHECK (group_concurrency >= 1),
    -- No job of the queue starts before this time (ms); NULL: no hold.
    ADD COLUMN held_until bigint,
    DROP CONSTRAINT queue_limits_check1,
    ADD CONSTRAINT queue_limits_something_set CHECK (concurrency IS NOT NULL
        OR rate_max IS NOT NULL OR group_concurrency IS NOT NULL OR held_until IS NOT NULL);
