-- Shared prelude of every kosh-jobs script (prepended at compile time).
--
-- KEYS[1] is the queue's key base `{prefix:queue}`: every key below shares its hash tag, so
-- one script only ever touches one cluster slot. KEYS[2], for the scripts that handle unique
-- keys, is the unique-key hash: `{prefix}:uniq` on a single server (keys unique across
-- queues), `{prefix:queue}:uniq` on a cluster (unique per queue).
--
-- A job's member is its sequence number, zero-padded to 16 digits: members of equal score
-- sort in enqueue order, and a member is also a valid score (the `s:<state>` sets are scored
-- by it). A running job's entry in the lease set is `<member>:<token>`, so checking a lease
-- is one lookup in that set.
--
-- Jobs are stored by column: one hash per field for the whole queue, keyed by member, so a
-- batch of jobs is a handful of commands whatever its size (one command per job and field
-- was most of Redis's time). A job's state is not stored: it is the index that holds it
-- (ready lists or set, lease, s:<state>, the completed lists), so a state change never
-- writes it twice.
local B = KEYS[1]
local K_READY = B .. ':ready'     -- ZSET score -priority: ready jobs, in reserve order
local K_RL = B .. ':rl:'          -- LIST per ready score (K_RL .. score): new ready jobs, by
                                  -- member (see `ready_take`)
local K_RL0 = B .. ':rl:0'        -- LIST the ready list of score 0, the default priority
local K_RLP = B .. ':rlp'         -- ZSET score = member: the other scores that have a list
local K_SCHED = B .. ':sched'     -- ZSET score run_at: scheduled jobs
local K_LEASE = B .. ':lease'     -- ZSET score lease deadline, member '<member>:<token>';
                                  -- deadline + 0.5 once a heartbeat marked the attempt
                                  -- started (see recover)
local K_UNIQ = KEYS[2]            -- HASH unique key -> job ref of the live job holding it
local K_PAUSED = B .. ':paused'   -- flag
local K_WAKE = B .. ':wake'       -- LIST of wake-up tokens for blocked waiters
local K_SPEC = B .. ':spec'       -- HASH member -> spec (immutable, packed by the client)
local K_RUN = B .. ':run'         -- HASH member -> 'attempts,started_at,token,worker' (until
                                  -- the job completes: see `kdl`)
local K_FIN = B .. ':fin'         -- HASH member -> finished_at (failed and cancelled jobs)
local K_RES = B .. ':res'         -- HASH member -> result JSON
local K_ERR = B .. ':err'         -- HASH member -> attempt errors (comma-separated JSON)
local K_PG = B .. ':pg'           -- HASH member -> progress JSON
local K_RA = B .. ':ra'           -- HASH member -> run_at, when a retry moved it
local K_AGAIN = B .. ':again'     -- SET: waiting jobs that ran before (their `run` counts);
                                  -- while empty, reserve reads no `run` entry
local K_LIM = B .. ':lim'         -- HASH the queue's flow limits: c (concurrency), rm and rp
                                  -- (rate: starts per window, window in ms); no key: none
local K_STARTS = B .. ':starts'   -- ZSET the last `rm` starts by time (member: the lease
                                  -- entry, unique); only while a rate limit is set
-- Groups (kosh_jobs_core::limits#groups). K_READY holds only the ready jobs without a group;
-- a ready job with one is in its group's set (kg) and in K_GALL. The lim hash also holds
-- g (group concurrency) and h (a hold: no job starts before this time).
local K_GRP = B .. ':grp'         -- HASH member -> group key (only jobs with a group)
local K_GALL = B .. ':gall'       -- ZSET score -priority: every ready job with a group (listing,
                                  -- counts, state); never read to pick a job
local K_GTURNS = B .. ':gturns'   -- ZSET group -> turn: the groups with ready jobs, the lowest
                                  -- turn next; a served group keeps its entry (its place) until
                                  -- reserve finds it empty. No key: no group has ready jobs
local K_GRUN = B .. ':grun'       -- HASH group -> its running jobs (no field at 0; no key: none)
local K_GLANE = B .. ':glane'     -- HASH u -> the turn of the jobs without a group, n -> the
                                  -- last turn given (a served lane goes to the back with n + 1)
-- A group rate (gm starts of each group per gp ms, in the lim hash): each group's log of its
-- last gm starts (kgl), and indexes that keep the cost per start constant.
local K_GLOGS = B .. ':glogs'     -- ZSET group -> its latest start: the groups with a log (one
                                  -- whose latest start left the window is forgotten)
local K_GFULL = B .. ':gfull'     -- ZSET group -> when its full window opens, written by the
                                  -- start that filled it; an entry at or before now is stale
local K_GPARK = B .. ':gpark'     -- ZSET group -> when its window opens: groups with ready jobs
                                  -- taken out of the turns while their window is full
local K_GPTURN = B .. ':gpturn'   -- HASH group -> its turn while parked, given back with it
-- Each definition above and below costs every call of a script that carries it (a string
-- built, a closure created, then collected): the keys only the paths that record attempt
-- history and throughput use (rarely, or once a call) are spelled out there instead:
-- `archive`, `count_ended` and `delete_jobs` write B .. ':hist', ':tp' and ':tpm'.
local K_HIST = B .. ':hist'       -- HASH member -> ended attempts 'a,w,start,ms,o;' (see archive)
local K_WID = B .. ':wid'         -- HASH worker ids by number: 'n:<id>' -> w, w -> id, 'n' -> last w
local K_TP = B .. ':tp'           -- HASH 'c<minute>' / 'f<minute>' -> jobs completed / failed
local K_TPM = B .. ':tpm'         -- ZSET the minutes of K_TP (score = member = minute start, ms)
local CHUNK = 1000                -- values per unpack(), far below Lua's limit
-- kosh_jobs_core::backend::MAX_UNSTARTED_EXPIRIES (a test keeps the two equal).
local MAX_UNSTARTED = 3
local WAKE_MAX = 64
-- Numbers given to redis.call are formatted with sprintf('%.17g') (some 2,000 instructions
-- each, in Redis 7.0): arguments are passed as strings, written once where computed.
-- A member too long for Redis's compact encodings (listpack: at most 64 bytes a value), kept
-- in the lease set and the column hashes so they always use hash tables. Small listpacks
-- are searched linearly, which makes a batch of 64 lookups in a set of 128 quadratic.
local SENT = '~kosh-jobs: keeps this key in the hash-table encoding; not a job, never read'

-- '00' to '99' in one string, a constant made when the script is compiled: the digits of x
-- are string.sub(D2, 2x + 1, 2x + 2).
local D2 = '00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899'

-- The four digits of v (0 to 9999), cut from D2.
local function four(v)
  local sub, lo = string.sub, v % 100
  local hi = (v - lo) / 100
  return sub(D2, 2 * hi + 1, 2 * hi + 2) .. sub(D2, 2 * lo + 1, 2 * lo + 2)
end

-- Members and lease tokens are written from digits, since a string.format call costs about
-- as much as a Redis command (some 2,500 instructions). A call that writes more than FEW
-- indexes a table of '00' to '99' (at t[x + 1]), quicker than cutting D2 (`four`), but the
-- table costs some 12,000 instructions to make: a call that writes a few cuts D2 instead.
local FEW = 8
local function p2()
  return {
    '00', '01', '02', '03', '04', '05', '06', '07', '08', '09',
    '10', '11', '12', '13', '14', '15', '16', '17', '18', '19',
    '20', '21', '22', '23', '24', '25', '26', '27', '28', '29',
    '30', '31', '32', '33', '34', '35', '36', '37', '38', '39',
    '40', '41', '42', '43', '44', '45', '46', '47', '48', '49',
    '50', '51', '52', '53', '54', '55', '56', '57', '58', '59',
    '60', '61', '62', '63', '64', '65', '66', '67', '68', '69',
    '70', '71', '72', '73', '74', '75', '76', '77', '78', '79',
    '80', '81', '82', '83', '84', '85', '86', '87', '88', '89',
    '90', '91', '92', '93', '94', '95', '96', '97', '98', '99',
  }
end

local function ks(st) return B .. ':s:' .. st end   -- ZSET score = member: a state's jobs
local function kt(st) return B .. ':t:' .. st end   -- ZSET score = finished_at: failed, cancelled
-- A job's reference (in unique-key holders and replies): its queue base and member.
local function jk(m) return B .. ':j:' .. m end
-- ZSET score -priority: the ready jobs of group g, in reserve order.
local function kg(g) return B .. ':gready:' .. g end
-- ZSET score = start time, member = '<member>:<reserve call>': group g's last gm starts.
local function kgl(g) return B .. ':glog:' .. g end

-- The job member of a lease entry.
local function lease_job(l) return string.sub(l, 1, 16) end

-- Lease tokens are odd when the job holds a unique key, so finishing it knows whether a key
-- must be released without reading the job first.
local function holds_unique(l) return string.byte(l, -1) % 2 == 1 end

-- A spec is '<unique len>,<name len>,<priority>,<max attempts>,<created>,<run_at>|' then
-- the unique key, the name and the payload; a job with a trace context (layout 7) has
-- ',<trace len>' before the '|' and the context before the payload. Its first byte is not '0'
-- iff it has a unique key (byte 48): reserve reads that byte inline, per job.

-- The fields of a spec the scripts use: priority, max attempts, run_at (numbers), unique key
-- (or nil).
local function spec_fields(s)
  local ul, pr, ma, cr, ra, at =
    string.match(s, '^(%d+),%d+,(%-?%d*),(%d*),(%-?%d+),([%+%-]?%d*),?%d*|()')
  if not ul then return 0, 1, 0, nil end
  ul = tonumber(ul)
  local u = nil
  if ul > 0 then u = string.sub(s, at, at + ul - 1) end
  -- Layout 5 leaves defaults out (priority 0, 3 attempts) and writes run_at relative to
  -- created_at, signed; layout 4 wrote run_at absolute, without a sign.
  local c = string.byte(ra, 1)
  if c == nil then
    ra = tonumber(cr)
  elseif c == 43 or c == 45 then
    ra = tonumber(cr) + tonumber(ra)
  else
    ra = tonumber(ra)
  end
  return tonumber(pr) or 0, tonumber(ma) or 3, ra, u
end

-- Calls cmd key [pre...] v1 v2 ... over flat[first..last] (default: all of it), `step`
-- values per item, in chunks. Returns the sum of the replies (for commands that count).
local function call_chunked(cmd, key, flat, step, pre, first, last)
  local i = first or 1
  local n = last or #flat
  local sum = 0
  while i <= n do
    local j = math.min(i + step * CHUNK - 1, n)
    local r
    if pre then
      r = redis.call(cmd, key, pre[1], pre[2], unpack(flat, i, j))
    else
      r = redis.call(cmd, key, unpack(flat, i, j))
    end
    if type(r) == 'number' then sum = sum + r end
    i = j + 1
  end
  return sum
end

local SENT_FIELD = { SENT, '' }
local SENT_LEASE = { '+inf', SENT }
-- ZADD key s1 m1 s2 m2 ... from a flat list.
local function zadd_all(key, flat) call_chunked('ZADD', key, flat, 2) end
-- ZADD to the lease set (the marker member first: Redis 6.2 picks the encoding by it).
local function zadd_leases(flat) call_chunked('ZADD', K_LEASE, flat, 2, SENT_LEASE) end
-- ZREM key m1 m2 ...
local function zrem_all(key, members) call_chunked('ZREM', key, members, 1) end
-- HSET key f1 v1 f2 v2 ... on a column hash (with its marker field).
local function hset_all(key, flat) call_chunked('HSET', key, flat, 2, SENT_FIELD) end
-- HSET of one job's field in a column hash (with its marker field).
local function col_set(key, m, v) redis.call('HSET', key, SENT, '', m, v) end
-- HDEL key f1 f2 ...
local function hdel_all(key, fields) call_chunked('HDEL', key, fields, 1) end

-- `cmd key m1 m2 ...` in chunks, for commands with one reply per member (HMGET, ZMSCORE).
local function per_member(cmd, key, members)
  local n = #members
  -- One call's reply is the answer as it is.
  if n == 0 then return {} end
  if n <= CHUNK then return redis.call(cmd, key, unpack(members)) end
  local out = {}
  local i = 1
  while i <= n do
    local j = math.min(i + CHUNK - 1, n)
    local r = redis.call(cmd, key, unpack(members, i, j))
    for k = i, j do out[k] = r[k - i + 1] end
    i = j + 1
  end
  return out
end
local function hmget_all(key, members) return per_member('HMGET', key, members) end
local function zmscore_all(key, members) return per_member('ZMSCORE', key, members) end

-- Makes jobs with a group ready in the queue at `base`: by[g] is a flat (score, member) list
-- of group g's jobs, `order` the groups (in a set order: the script's writes must not depend
-- on Lua's table order), `all` every job of them. A group not taking turns yet gets turn 0:
-- it goes first, once (one that still has its entry keeps its place).
local function ready_grouped(base, by, order, all)
  if #all == 0 then return end
  zadd_all(base .. ':gall', all)
  local turns = base .. ':gturns'
  for _, g in ipairs(order) do
    zadd_all(base .. ':gready:' .. g, by[g])
    redis.call('ZADD', turns, 'NX', '0', g)
  end
end

-- Makes the jobs of a flat (score, member) list ready: each with a group in its group's
-- set, the others in K_READY. A queue that never had a job with a group (K_GRP holds no job,
-- at most its marker) pays one HLEN.
local function make_ready(flat)
  if #flat == 0 then return end
  if redis.call('HLEN', K_GRP) <= 1 then
    zadd_all(K_READY, flat)
    return
  end
  local ms = {}
  for i = 2, #flat, 2 do ms[#ms + 1] = flat[i] end
  local gs = hmget_all(K_GRP, ms)
  local plain, all, by, order = {}, {}, {}, {}
  for k, m in ipairs(ms) do
    local sc, g = flat[2 * k - 1], gs[k]
    if g then
      local l = by[g]
      if not l then
        l = {}
        by[g] = l
        order[#order + 1] = g
      end
      l[#l + 1] = sc
      l[#l + 1] = m
      all[#all + 1] = sc
      all[#all + 1] = m
    else
      plain[#plain + 1] = sc
      plain[#plain + 1] = m
    end
  end
  zadd_all(K_READY, plain)
  ready_grouped(B, by, order, all)
end

-- Ready jobs without a group are in two places with one order, score (-priority) then member:
-- a list per score (K_RL .. score) for the jobs pushed ready without a unique key or group on
-- a single server, and the sorted set K_READY for all others (jobs that ran before, were
-- scheduled, retried, pushed with a unique key or on a cluster). On a single server a push
-- takes its sequence numbers inside its script, so a list only ever grows at its end, in
-- member order. A list entry costs some 20 bytes of memory where a sorted-set entry costs
-- 120, and a tenth of the instructions to add. A job in a list never ran and has no unique
-- key: `state_of` knows it as the one left over. K_RLP notes the scores other than 0 that
-- have a list, exactly; the list of score 0 (K_RL0, the default priority) is never noted, so
-- the usual queue's pushes and leases touch nothing but its list.

-- The scores that may have a ready list, in order: those of K_RLP, and '0'.
local function list_scores()
  local out, zero = {}, false
  for _, sc in ipairs(redis.call('ZRANGE', K_RLP, '0', '-1')) do
    if not zero and tonumber(sc) > 0 then
      out[#out + 1] = '0'
      zero = true
    end
    out[#out + 1] = sc
  end
  if not zero then out[#out + 1] = '0' end
  return out
end

-- After jobs left the list of score sc: forgets the score if its list is gone.
local function list_left(sc, k)
  if sc ~= '0' and redis.call('EXISTS', k) == 0 then redis.call('ZREM', K_RLP, sc) end
end

-- How many ready jobs without a group there are.
local function ready_count()
  local n = redis.call('ZCARD', K_READY)
  for _, sc in ipairs(list_scores()) do n = n + redis.call('LLEN', K_RL .. sc) end
  return n
end

-- Whether any ready job without a group exists.
local function ready_any() return redis.call('EXISTS', K_READY, K_RLP, K_RL0) > 0 end

-- Takes (removes) the first `take` ready jobs without a group. Returns their members, in
-- order, and whether any is left (take_s: take as a string; a waiter woken for nothing is
-- a conformance failure, so this is exact). The sorted set's first take + 1 are read at
-- once; each list is read from its head only while its score is the lowest left.
local function ready_take(take, take_s)
  local ms, n = {}, 0
  local z = redis.call('ZRANGE', K_READY, '0', take_s, 'WITHSCORES')
  local zn, zi = #z / 2, 1 -- z's pairs, and the next one not taken
  local scs = list_scores()
  local si = 1 -- the next list to read
  local left = false -- the list at si still has jobs
  while n < take and si <= #scs do
    local sc = scs[si]
    local nsc = tonumber(sc)
    while n < take and zi <= zn and tonumber(z[2 * zi]) < nsc do
      n = n + 1
      ms[n] = z[2 * zi - 1]
      zi = zi + 1
    end
    if n == take then break end
    local k, want = K_RL .. sc, take - n
    if zi > zn then
      -- Nothing of the sorted set comes before the list's jobs: popped at once.
      local got = redis.call('LPOP', k, string.format('%d', want)) or {}
      for i = 1, #got do ms[n + i] = got[i] end
      n = n + #got
      left = #got == want and redis.call('EXISTS', k) == 1
    else
      -- Interleaved by member with the sorted set's jobs of the same score; one more than
      -- wanted tells whether the list empties.
      local lm = redis.call('LRANGE', k, '0', string.format('%d', want))
      local li = 1
      while n < take and li <= #lm do
        n = n + 1
        if zi <= zn and tonumber(z[2 * zi]) == nsc and z[2 * zi - 1] < lm[li] then
          ms[n] = z[2 * zi - 1]
          zi = zi + 1
        else
          ms[n] = lm[li]
          li = li + 1
        end
      end
      if li > 1 then redis.call('LTRIM', k, string.format('%d', li - 1), '-1') end
      left = li <= #lm
    end
    if left then break end
    if sc ~= '0' then redis.call('ZREM', K_RLP, sc) end
    si = si + 1
  end
  while n < take and zi <= zn do
    n = n + 1
    ms[n] = z[2 * zi - 1]
    zi = zi + 1
  end
  if zi > 1 then redis.call('ZREMRANGEBYRANK', K_READY, '0', string.format('%d', zi - 2)) end
  if left or zi <= zn then return ms, true end
  -- The lists not read: those of K_RLP have jobs, the default one is asked.
  for i = si, #scs do
    if scs[i] ~= '0' or redis.call('EXISTS', K_RL0) == 1 then return ms, true end
  end
  return ms, false
end

-- ready_take for a queue whose only ready jobs may be those of the default list (no sorted
-- set, no other list: the reserve's usual path asked).
local function ready_take0(take_s)
  local got = redis.call('LPOP', K_RL0, take_s) or {}
  return got, #got == tonumber(take_s) and redis.call('EXISTS', K_RL0) == 1
end

-- The first ready job without a group: its member and the score of the list that holds it
-- (false: the sorted set), or false.
local function ready_first()
  local z = redis.call('ZRANGE', K_READY, '0', '0', 'WITHSCORES')
  local zs = z[1] and tonumber(z[2])
  for _, sc in ipairs(list_scores()) do
    local ls = tonumber(sc)
    if zs and zs < ls then break end
    local h = redis.call('LINDEX', K_RL .. sc, '0')
    if h then
      if zs and zs == ls and z[1] < h then break end
      return h, sc
    end
  end
  return z[1] or false, false
end

-- Takes the job ready_first gave: member m, from the list of score sc (false: the sorted set).
local function ready_drop(m, sc)
  if not sc then
    redis.call('ZREM', K_READY, m)
    return
  end
  local k = K_RL .. sc
  redis.call('LPOP', k)
  list_left(sc, k)
end

-- Removes ready job m, of ready score sc, from wherever it waits without a group (a list is
-- searched: an operator's action). Returns whether it was there.
local function ready_remove(m, sc)
  if redis.call('ZREM', K_READY, m) == 1 then return true end
  local k = K_RL .. sc
  if redis.call('LREM', k, '1', m) == 0 then return false end
  list_left(sc, k)
  return true
end

-- Whether any job with a group is running (only then must a job leaving `running` free its
-- group's slot, see unrun): one EXISTS.
local function group_running() return redis.call('EXISTS', K_GRUN) == 1 end

-- Frees the group slots of jobs ms, which left `running` (a slot is its job's lease: every
-- path out of `running` calls this once per job, when group_running()).
local function unrun(ms)
  if #ms == 0 then return end
  local gs = hmget_all(K_GRP, ms)
  local by, order = {}, {}
  for k = 1, #ms do
    local g = gs[k]
    if g then
      if not by[g] then
        by[g] = 0
        order[#order + 1] = g
      end
      by[g] = by[g] + 1
    end
  end
  for _, g in ipairs(order) do
    if redis.call('HINCRBY', K_GRUN, g, string.format('%d', -by[g])) <= 0 then
      redis.call('HDEL', K_GRUN, g)
    end
  end
end

-- The queue's group rate from its limits `lim` (HMGET K_LIM c rm rp g h gm gp): { starts,
-- window ms } as numbers, or nil without one.
local function group_rate(lim)
  if not lim[6] then return nil end
  return { tonumber(lim[6]), tonumber(lim[7]) }
end

-- When group g's rate window opens (a number) if it is full at now (a number), counting t
-- starts at now not logged yet; nil if it has room. Full means its gr[1]-th latest start is
-- inside the window (now - per, now], as `RateLimit::room` counts: one read of its log.
local function group_opens(g, gr, t, now)
  local max, per = gr[1], gr[2]
  if t >= max then return now + per end
  local rank = string.format('%d', t - max)
  local r = redis.call('ZRANGE', kgl(g), rank, rank, 'WITHSCORES')
  if #r == 0 then return nil end
  local at = tonumber(r[2])
  if at > now - per then return at + per end
  return nil
end

-- Gives parked groups gs their turns back (a group that joined the turns again meanwhile, by
-- a job made ready, gets its older turn).
local function unpark(gs)
  if #gs == 0 then return end
  local turns = hmget_all(K_GPTURN, gs)
  local flat = {}
  for i, g in ipairs(gs) do
    flat[#flat + 1] = turns[i] or '0'
    flat[#flat + 1] = g
  end
  zadd_all(K_GTURNS, flat)
  zrem_all(K_GPARK, gs)
  hdel_all(K_GPTURN, gs)
end

-- When the first parked group that may then start a job (not at its concurrency limit `cap`,
-- with a ready job) has its window open (a string; now's, for one due to be given its turn
-- back), or nil. It reads the parked groups in order, usually one; past 100 it answers the
-- 100th's time: a waiter wakes early at worst, and its reserve settles it.
local function parked_opens(cap, now)
  for i = 0, 99 do
    local i_s = string.format('%d', i)
    local r = redis.call('ZRANGE', K_GPARK, i_s, i_s, 'WITHSCORES')
    if #r == 0 then return nil end
    local g, at = r[1], string.match(r[2], '^%d+')
    if tonumber(at) <= now then return string.format('%d', now) end
    if i == 99 then return at end
    if (not cap or (tonumber(redis.call('HGET', K_GRUN, g)) or 0) < cap)
      and redis.call('EXISTS', kg(g)) == 1 then
      return at
    end
  end
  return nil
end

-- The attempts so far, started_at, token ('' when none) and worker number ('' when unknown)
-- of a job's `run` entry 'attempts,started_at,token,worker' (layout 3 had no worker).
local function run_fields(r)
  if not r then return 0, '', '', '' end
  local a, s, t, w = string.match(r, '^(%d+),(%d*),(%d*),?(%d*)$')
  if not a then return 0, '', '', '' end
  return tonumber(a), s, t, w
end

-- A reserve call whose jobs are all on their first attempt (the usual call) writes no `run`
-- entry per job: K_RC holds, under the call's number `tok` (a lease token is tok * 10000 +
-- 2k, plus 1), '<started_at>,,<worker>', under 'n' .. tok how many of its leases are live,
-- and under 'm' .. tok the members it leased, concatenated (the k-th at 16k - 15).
-- Such a job's `run` entry is implied by its lease token t: '1,<started_at>,<t>,<worker>'
-- (`implied_run`). Completing the job puts it in the job's list entry (see `kdl`); its lease
-- ending any other way writes it to K_RUN (`keep_run`). A job that has a K_RUN entry is in
-- none of those calls: it ran before, or a reserve leased it together with one that did.
local K_RC = B .. ':rc'           -- HASH tok -> '<started_at>,,<worker>', 'n' .. tok -> live
                                  -- leases, 'm' .. tok -> the members leased

-- The `run` entry that lease token t implies (see K_RC), or nil when its call wrote entries.
local function implied_run(t)
  if not t or #t < 5 then return nil end
  local c = redis.call('HGET', K_RC, string.sub(t, 1, -5))
  if not c then return nil end
  local started, w = string.match(c, '^(%d*),,(%d*)$')
  return '1,' .. started .. ',' .. t .. ',' .. w
end

-- n fewer live leases of the reserve call numbered tok: its K_RC record goes with the last.
-- `live`: its live leases, when the caller read them (then the last ones cost no HINCRBY).
local function rc_done(tok, n, live)
  if not (live and live <= n)
    and redis.call('HINCRBY', K_RC, 'n' .. tok, string.format('%d', -n)) > 0 then
    return
  end
  redis.call('HDEL', K_RC, tok, 'n' .. tok, 'm' .. tok)
end

-- The lease with token t of job m ends other than by completing: its implied `run` entry r
-- is written to K_RUN, and its call has one live lease less.
local function keep_run(m, r, t)
  col_set(K_RUN, m, r)
  rc_done(string.sub(t, 1, -5), 1)
end

-- The `run` entry of job m, whose lease token is t (or nil): its K_RUN entry, or the one t
-- implies. Returns it (nil: none) and whether it is implied.
local function run_of(m, t)
  local r = redis.call('HGET', K_RUN, m)
  if r then return r, false end
  r = implied_run(t)
  return r, r ~= nil
end

-- Lease tokens of running jobs met while reading the lease set (member -> token).
local LEASE_TOK = {}

-- The lease token of job m of the queue at `base`, or nil when it is not running: for a job
-- without a `run` entry (see K_RC), a scan of the queue's lease set (its running jobs).
local function lease_token(base, m)
  local t = base == B and LEASE_TOK[m]
  if t then return t end
  local cursor = '0'
  repeat
    local r = redis.call('ZSCAN', base .. ':lease', cursor, 'MATCH', m .. ':*', 'COUNT', '1000')
    cursor = r[1]
    local e = r[2][1]
    if e then
      t = string.sub(e, 18)
      if base == B then LEASE_TOK[m] = t end
      return t
    end
  until cursor == '0'
  return nil
end

-- Appends the attempt of `run` entry r, ended now (a number) as `code`, to job m's history of
-- ended attempts (K_HIST): 'attempt,worker,started_at,duration_ms,code;' per attempt, oldest
-- first, the latest 25 kept (admin::MAX_HISTORY). Codes: r retry scheduled, f failed, t timed
-- out, p panicked, l lease expired, x released, k cancelled, s snoozed (a completed attempt
-- stays in the job's list entry, see `kdl`). Errors are not copied: the failed ones pair, from
-- the end, with the job's `err` entries.
local function archive(m, r, code, now)
  local a, s, _, w = run_fields(r)
  if s == '' then return end
  local k = B .. ':hist'
  local h = redis.call('HGET', k, m) or ''
  h = h .. a .. ',' .. w .. ',' .. s .. ',' .. string.format('%d', now - tonumber(s)) .. ','
    .. code .. ';'
  local _, n = string.gsub(h, ';', ';')
  if n > 25 then h = string.sub(h, string.find(h, ';', 1, true) + 1) end
  col_set(k, m, h)
end

-- Counts n jobs of the queue (n_s: n as a string; a number given to redis.call is formatted
-- with sprintf) that ended now (a number) as `what` ('c' completed, 'f' failed) in the
-- minute's counter (K_TP; min_s: the minute's start, when the caller has it). A counter's
-- first increment starts a new minute: it is indexed (K_TPM), and minutes older than 7 days
-- (admin::THROUGHPUT_RETENTION) are dropped, so most calls cost one command.
local function count_ended(what, n, n_s, now, min_s)
  if n <= 0 then return end
  min_s = min_s or string.format('%d', now - now % 60000)
  local tp = B .. ':tp'
  if redis.call('HINCRBY', tp, what .. min_s, n_s) ~= n then return end
  local tpm = B .. ':tpm'
  redis.call('ZADD', tpm, min_s, min_s)
  local old = redis.call('ZRANGEBYSCORE', tpm, '-inf', '(' .. string.format('%d', now - 604800000),
    'LIMIT', '0', '1000')
  if #old == 0 then return end
  local f = {}
  for _, x in ipairs(old) do
    f[#f + 1] = 'c' .. x
    f[#f + 1] = 'f' .. x
  end
  hdel_all(tp, f)
  zrem_all(tpm, old)
end

-- Lets up to n blocked waiters go (one token each), keeping at most WAKE_MAX tokens.
-- Tokens are '1' (jobs are ready) or 's:<origin>' (the earliest scheduled time moved; the
-- process `origin` that caused it knows already and ignores its own token).
local function wake_queue(base, n, token)
  if n <= 0 then return end
  -- Waiters of a paused queue have nothing to take; resuming wakes them.
  if redis.call('EXISTS', base .. ':paused') == 1 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  token = token or '1'
  local t = {}
  for i = 1, n do t[i] = token end
  redis.call('RPUSH', base .. ':wake', unpack(t))
  redis.call('LTRIM', base .. ':wake', '-64', '-1')
end
local function wake(n, token) wake_queue(B, n, token) end

-- After n jobs left `running`, made_ready of them back to ready (which wakes that many
-- waiters anyway). Under a concurrency (or group concurrency) limit each freed slot may let a held-back job start:
-- one waiter more per freed slot, as many as jobs are ready. Without a limit, or when every
-- job went back to ready, this costs no lookup beyond the wake-up itself.
local function wake_freed(n, made_ready)
  if n > made_ready then
    -- A concurrency or a group concurrency limit.
    local lim = redis.call('HMGET', K_LIM, 'c', 'g')
    if lim[1] or lim[2] then
      local r = ready_count()
      if lim[2] then r = r + redis.call('ZCARD', K_GALL) end
      if n > r then n = r end
      if n > made_ready then made_ready = n end
    end
  end
  wake(made_ready)
end

-- Running jobs: the lease set less its marker (scored +inf, every lease a finite deadline).
local function running_count() return redis.call('ZCOUNT', K_LEASE, '-inf', '(inf') end

-- How many jobs the limits `lim` (HMGET K_LIM c rm rp) let start at now (a number): the
-- concurrency room and the rate room, each nil without that limit.
local function flow_room(lim, now)
  local rc, rr = nil, nil
  if lim[1] then
    rc = tonumber(lim[1]) - running_count()
    if rc < 0 then rc = 0 end
  end
  if lim[2] then
    -- A start at t is in the window of now when now - per < t.
    local from = string.format('%d', now - tonumber(lim[3]))
    rr = tonumber(lim[2]) - redis.call('ZCOUNT', K_STARTS, '(' .. from, '+inf')
    if rr < 0 then rr = 0 end
  end
  return rc, rr
end

-- When a full rate window has room again (a string): `per` after its oldest start that still
-- counts. The log keeps the last `rm` starts only, so every start in the window counts.
local function rate_opens(lim, now)
  local per = tonumber(lim[3])
  local r = redis.call('ZRANGEBYSCORE', K_STARTS, '(' .. string.format('%d', now - per), '+inf',
    'WITHSCORES', 'LIMIT', '0', '1')
  if #r == 0 then return false end
  return string.format('%d', tonumber(r[2]) + per)
end

-- Whether job m of the queue at `base` is scheduled, ready or running.
local function is_live(base, m)
  if redis.call('ZSCORE', base .. ':ready', m) then return true end
  if redis.call('ZSCORE', base .. ':gall', m) then return true end
  if redis.call('ZSCORE', base .. ':sched', m) then return true end
  local _, _, t = run_fields(redis.call('HGET', base .. ':run', m))
  -- A job without a `run` entry may run on a lease its reserve call implies (see K_RC).
  if t == '' then return lease_token(base, m) ~= nil end
  return redis.call('ZSCORE', base .. ':lease', m .. ':' .. t) ~= false
end

-- The ref of the live job holding unique key u, or nil (a stale entry is removed).
local function unique_holder(u)
  local h = redis.call('HGET', K_UNIQ, u)
  if not h then return nil end
  local base, m = string.match(h, '^(.*):j:(%d+)$')
  if base and is_live(base, m) then return h end
  redis.call('HDEL', K_UNIQ, u)
  return nil
end

local function release_unique(u, m)
  if u and redis.call('HGET', K_UNIQ, u) == jk(m) then
    redis.call('HDEL', K_UNIQ, u)
  end
end

-- Appends one attempt's error to the comma-separated JSON objects in `prev`.
local function with_error(prev, attempt, msg, now_s)
  local e = '{"attempt":' .. attempt .. ',"error":' .. cjson.encode(msg) .. ',"at":' .. now_s .. '}'
  if prev and prev ~= '' then return prev .. ',' .. e end
  return e
end

-- Earliest time something may become ready by itself: the first scheduled run_at, the
-- first lease deadline (whose expiry makes the job ready again) or `held` (when a full rate
-- window opens again for ready jobs it holds back; nil if none), as a string, or false.
-- Ready jobs held back by a full concurrency limit are not due: a job leaving `running`
-- wakes the waiters (see wake_freed).
local function next_due(held)
  local a = redis.call('ZRANGE', K_SCHED, '0', '0', 'WITHSCORES')[2]
  local b = redis.call('ZRANGE', K_LEASE, '0', '0', 'WITHSCORES')[2]
  if b == 'inf' then b = nil end -- only the marker
  if b then b = string.match(b, '^%d+') end -- a started lease's deadline + 0.5
  if held and not (a and tonumber(a) <= tonumber(held)) then a = held end
  if a and b then
    if tonumber(b) < tonumber(a) then return b end
    return a
  end
  return a or b or false
end

-- Appends members l (in member order) to the ready list of score sc of the queue at `base`
-- (see `ready_take`), noting a list it creates in the queue's `rlp` (but the default one).
local function list_push(base, sc, l)
  local k = base .. ':rl:' .. sc
  local i, n = 1, #l
  while i <= n do
    local j = math.min(i + CHUNK - 1, n)
    -- A list as long as what was pushed is new.
    if redis.call('RPUSH', k, unpack(l, i, j)) == j and i == 1 and sc ~= '0' then
      redis.call('ZADD', base .. ':rlp', sc, sc)
    end
    i = j + 1
  end
end

-- list_push for the ready jobs of a flat (score, member) list, in member order.
local function lists_push(base, flat)
  local by, order = {}, {}
  for i = 1, #flat, 2 do
    local sc = flat[i]
    local l = by[sc]
    if not l then
      l = {}
      by[sc] = l
      order[#order + 1] = sc
    end
    l[#l + 1] = flat[i + 1]
  end
  for _, sc in ipairs(order) do list_push(base, sc, by[sc]) end
end

-- Stores n jobs read from ARGV[a] on, each: [its queue's place in qs, when qs has several,]
-- spec, ready score (-priority), in the full form also run_at and unique key ('' = none),
-- and when `grouped` (a full form) also its group ('' = none): a job with a group is kept in
-- the `grp` column, and when ready in its group's set (see ready_grouped), not in `ready`.
-- bases holds the key base of each queue. Job i (from 1) gets member base + i unless its
-- unique key is held: then `out` gets i and the holder's job ref appended instead. Jobs are
-- handled in order, so of two jobs with one unique key the first wins. Wakes the queues'
-- waiters (a new earliest scheduled job wakes them with 's:<origin>'). Returns the next ARGV
-- index.
-- `score`: in the plain form for one queue, the ready score of every job when the caller
-- sends it once instead of per job (then each job is its spec alone). `lists`: the sequence
-- numbers were taken in this script (a single server), so the plain forms' ready jobs go to
-- the lists (see `ready_take`).
local function push_jobs(bases, n, base, full, grouped, a, now, origin, out, score, lists)
  local nq = #bases
  -- Per queue: its base, and the columns and index entries to write (built whole: a table
  -- that grows field by field is rehashed at each power of two).
  local qs = {}
  for q = 1, nq do
    qs[q] = { b = bases[q], sp = {}, rd = {}, sc = {}, sci = {}, earliest = nil, one = false,
      gp = {}, gby = {}, gorder = {}, gall = {} }
  end
  local taken = {} -- unique key -> job ref, for keys taken earlier in this batch
  -- Members are '%016d' of base + i: 12 digits that change rarely, then 4 (see `p2`).
  local lo = (base + 1) % 10000
  local hi = (base + 1 - lo) / 10000
  local hi_s = string.format('%012d', hi)
  local P2 = n > FEW and p2()
  local from = 1 -- the first job for the general loop below
  if nq == 1 and not full then
    -- The plain form for one queue (the usual batch): the general loop's work for it, with
    -- positions counted instead of taken with `#` (a search of the table each time).
    local sp, rd, argv = qs[1].sp, qs[1].rd, ARGV
    -- Per job: spec and score, or the spec alone with one score for all. With one score
    -- for the lists, rd gets the members alone (`one`: that list's score).
    local step = score and 1 or 2
    local one = lists and score
    for i = 1, n do
      local lo2 = lo % 100
      local m = P2 and hi_s .. P2[(lo - lo2) / 100 + 1] .. P2[lo2 + 1] or hi_s .. four(lo)
      lo = lo + 1
      if lo == 10000 then
        lo = 0
        hi = hi + 1
        hi_s = string.format('%012d', hi)
      end
      local j = i + i
      sp[j - 1] = m
      sp[j] = argv[a]
      if one then
        rd[i] = m
      else
        rd[j - 1] = score or argv[a + 1]
        rd[j] = m
      end
      a = a + step
    end
    qs[1].one = one
    from = n + 1
  end
  for i = from, n do
    local q = qs[1]
    if nq > 1 then
      q = qs[tonumber(ARGV[a])]
      a = a + 1
    end
    local lo2 = lo % 100
    local m = P2 and hi_s .. P2[(lo - lo2) / 100 + 1] .. P2[lo2 + 1] or hi_s .. four(lo)
    lo = lo + 1
    if lo == 10000 then
      lo = 0
      hi = hi + 1
      hi_s = string.format('%012d', hi)
    end
    local sp, rd = q.sp, q.rd
    if not full then
      sp[#sp + 1] = m
      sp[#sp + 1] = ARGV[a]
      rd[#rd + 1] = ARGV[a + 1]
      rd[#rd + 1] = m
      a = a + 2
    else
      local spec, score, ra_s, u = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
      local g = ''
      if grouped then
        g = ARGV[a + 4]
        a = a + 5
      else
        a = a + 4
      end
      local holder = nil
      if u ~= '' then holder = taken[u] or unique_holder(u) end
      if holder then
        out[#out + 1] = i
        out[#out + 1] = holder
      else
        if u ~= '' then
          local ref = q.b .. ':j:' .. m
          taken[u] = ref
          redis.call('HSET', K_UNIQ, u, ref)
        end
        sp[#sp + 1] = m
        sp[#sp + 1] = spec
        if g ~= '' then
          q.gp[#q.gp + 1] = m
          q.gp[#q.gp + 1] = g
        end
        local ra = tonumber(ra_s)
        if ra > now then
          q.sc[#q.sc + 1] = ra_s
          q.sc[#q.sc + 1] = m
          q.sci[#q.sci + 1] = m
          q.sci[#q.sci + 1] = m
          if q.earliest == nil or ra < q.earliest then q.earliest = ra end
        elseif g ~= '' then
          local l = q.gby[g]
          if not l then
            l = {}
            q.gby[g] = l
            q.gorder[#q.gorder + 1] = g
          end
          l[#l + 1] = score
          l[#l + 1] = m
          q.gall[#q.gall + 1] = score
          q.gall[#q.gall + 1] = m
        else
          rd[#rd + 1] = score
          rd[#rd + 1] = m
        end
      end
    end
  end
  for _, q in ipairs(qs) do
    local b = q.b
    call_chunked('HSET', b .. ':spec', q.sp, 2, SENT_FIELD)
    if #q.gp > 0 then call_chunked('HSET', b .. ':grp', q.gp, 2, SENT_FIELD) end
    local nr = #q.rd / 2
    if q.one then
      list_push(b, q.one, q.rd)
      nr = #q.rd
    elseif lists and not full then
      lists_push(b, q.rd)
    else
      zadd_all(b .. ':ready', q.rd)
    end
    ready_grouped(b, q.gby, q.gorder, q.gall)
    wake_queue(b, nr + #q.gall / 2)
    if #q.sc > 0 then
      local before = redis.call('ZRANGE', b .. ':sched', '0', '0', 'WITHSCORES')[2]
      zadd_all(b .. ':sched', q.sc)
      zadd_all(b .. ':s:scheduled', q.sci)
      -- A new earliest scheduled job changes when waiters (of other processes) must wake up.
      if not before or q.earliest < tonumber(before) then
        wake_queue(b, 1, 's:' .. origin)
      end
    end
  end
  return a
end

-- Ends job m in state `failed` (its lease or schedule already removed by the caller).
local function to_failed(m, now_s, u)
  release_unique(u, m)
  col_set(K_FIN, m, now_s)
  redis.call('ZADD', kt('failed'), now_s, m)
  redis.call('ZADD', ks('failed'), m, m)
end

-- Notes the jobs of a flat (score, member) list as having run before.
local function ran_again(flat)
  local ms = {}
  for i = 2, #flat, 2 do ms[#ms + 1] = flat[i] end
  call_chunked('SADD', K_AGAIN, ms, 1)
end

-- Redis above `maxmemory` (policy noeviction) refuses a script's first write when that
-- command may add memory, but never a later one: a script cannot stop halfway. A push is then
-- refused whole, as it should be. The scripts that move a worker's jobs along (extend, give
-- back or recover leases) call this before their first such write, so that workers keep
-- draining the queue (retention frees memory): deleting a key that never exists counts as
-- the script's first write and adds nothing.
local function allow_writes() redis.call('DEL', B .. ':never') end

-- Moves jobs whose lease deadline is at or before now back to ready (or to failed when out of
-- attempts), recording `lease expired`. `limit` is a string. Returns how many were recovered.
--
-- A heartbeat scores a lease its deadline + 0.5: that marks the attempt started, at no cost
-- in memory or commands. A lease still on a whole number expired before its worker told the
-- store its handler started (it died in between): its attempt is given back, nothing is
-- recorded, and the job's count of such expiries (`uns`, kept only for jobs that had one) goes
-- up, at most MAX_UNSTARTED times; past that, it counts like any other.
local function recover(now_s, limit)
  local exp = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now_s .. '.5', 'WITHSCORES',
    'LIMIT', '0', limit)
  if #exp == 0 then return 0 end
  allow_writes()
  local now = tonumber(now_s)
  local rd = {}
  local nf = 0
  local ls = {}
  local k_uns = B .. ':uns'
  for i = 1, #exp, 2 do
    local l = exp[i]
    ls[#ls + 1] = l
    local m = lease_job(l)
    local s = redis.call('HGET', K_SPEC, m)
    if s then
      local pr, ma, _, u = spec_fields(s)
      local t = string.sub(l, 18)
      local r, implied = run_of(m, t)
      if implied then keep_run(m, r, t) end
      local a, started = run_fields(r)
      local given_back = false
      if not string.find(exp[i + 1], '.', 1, true) then
        local c = tonumber(redis.call('HGET', k_uns, m) or '0')
        if c < MAX_UNSTARTED then
          given_back = true
          redis.call('HSET', k_uns, m, string.format('%d', c + 1))
          a = a - 1
          if a < 0 then a = 0 end
          col_set(K_RUN, m, string.format('%d', a) .. ',' .. started .. ',')
        end
      end
      if given_back then
        rd[#rd + 1] = string.format('%d', -pr)
        rd[#rd + 1] = m
      else
        col_set(K_ERR, m, with_error(redis.call('HGET', K_ERR, m), a, 'lease expired', now_s))
        archive(m, r, 'l', now)
        if a >= ma then
          to_failed(m, now_s, u)
          nf = nf + 1
        else
          rd[#rd + 1] = string.format('%d', -pr)
          rd[#rd + 1] = m
        end
      end
    end
  end
  zrem_all(K_LEASE, ls)
  if group_running() then
    local ms = {}
    for k, l in ipairs(ls) do ms[k] = lease_job(l) end
    unrun(ms)
  end
  make_ready(rd)
  ran_again(rd)
  wake_freed(#ls, #rd / 2)
  if nf > 0 then count_ended('f', nf, string.format('%d', nf), now) end
  return #ls
end

-- Moves due scheduled jobs to ready (`now_s` and `limit` are strings). Returns how many.
local function promote(now_s, limit)
  local due = redis.call('ZRANGEBYSCORE', K_SCHED, '-inf', now_s, 'LIMIT', '0', limit)
  if #due == 0 then return 0 end
  local specs = hmget_all(K_SPEC, due)
  local rd = {}
  for i, m in ipairs(due) do
    if specs[i] then
      rd[#rd + 1] = string.format('%d', -spec_fields(specs[i]))
      rd[#rd + 1] = m
    end
  end
  zrem_all(K_SCHED, due)
  zrem_all(ks('scheduled'), due)
  make_ready(rd)
  return #due
end

-- Completed jobs (layout 9) are kept by the hundred ids, in lists: job m's entry is in the list
-- kdl(b), b the first 14 digits of m (its bucket), as '<the last 2 digits of m>,<finished_at>,'
-- then its `run` entry when that moved there (else it is in K_RUN). A list holds its jobs in
-- the order they completed. K_CB notes the buckets that have a list (it may also note a
-- bucket whose list is gone: readers skip those); K_CN counts the completed jobs. A list
-- entry costs about 20 bytes where a sorted-set entry cost some 130.
local function kdl(b) return B .. ':c:' .. b end
local K_CB = B .. ':cb'           -- ZSET score = member = a bucket with a list of completed jobs
local K_CN = B .. ':cn'           -- STRING the number of completed jobs

-- Completed jobs' entries met while reading lists (member -> entry; false: not completed),
-- so the records of a listing do not read them again.
local DONE = {}

-- The entries of bucket b's list, each noted in DONE.
local function done_bucket(b)
  local es = redis.call('LRANGE', kdl(b), '0', '-1')
  local sub = string.sub
  for _, e in ipairs(es) do DONE[b .. sub(e, 1, 2)] = e end
  return es
end

-- The entry of completed job m, or nil when m is not completed.
local function done_entry(m)
  local e = DONE[m]
  if e == nil then
    done_bucket(string.sub(m, 1, 14))
    e = DONE[m]
    if e == nil then DONE[m] = false end
  end
  return e or nil
end

-- Appends the completed entries of jobs to their buckets' lists: the job whose member
-- starts ks[i] (a member, or a lease '<member>:<token>') has the entry '<last 2 digits>'
-- then by[key[i]], or else tail[i] (what many jobs share, looked up; what is the job's own).
-- One pass: a function or a second loop per job cost some 700 instructions a job. A bucket
-- whose list this starts is noted in K_CB. Counts the jobs in K_CN (n_s: #ks as a string)
-- and returns how many are completed now.
local function done_append(ks, by, key, tail, n_s)
  local sub = string.sub
  local lists, order = {}, {}
  -- The bucket of the job before, and its list: a batch's jobs mostly share one.
  local lb, ll = nil, nil
  for i = 1, #ks do
    local b = sub(ks[i], 1, 14)
    if b ~= lb then
      ll = lists[b]
      if not ll then
        ll = {}
        lists[b] = ll
        order[#order + 1] = b
      end
      lb = b
    end
    ll[#ll + 1] = sub(ks[i], 15, 16) .. (by[key[i]] or tail[i])
  end
  for _, b in ipairs(order) do
    local l = lists[b]
    if redis.call('RPUSH', kdl(b), unpack(l)) == #l then redis.call('ZADD', K_CB, b, b) end
  end
  return redis.call('INCRBY', K_CN, n_s)
end

-- How many jobs are completed.
local function done_count() return tonumber(redis.call('GET', K_CN) or '0') end

-- The finish time and the run entry of completed entry e ('' when it is in K_RUN).
local function done_fields(e)
  return string.match(e, '^%d%d,(%d*),(.*)$')
end

-- Deletes finished jobs of one final state: their columns and index entries. Columns that
-- hold no job (at most their marker) are skipped: results, errors, progress and moved
-- run_at are often never written. `taken`: the caller removed the jobs' index entries
-- already (completed jobs: from their lists, see `kdl`).
local function delete_jobs(st, members, taken)
  hdel_all(K_SPEC, members)
  local done = st == 'completed'
  -- A completed job has no `run` or `fin` entry: both are in its list entry.
  if not done then
    hdel_all(K_RUN, members)
    hdel_all(K_FIN, members)
  end
  -- Unstarted expiries (see recover): kept only for jobs that had one, so usually no key.
  local k_uns = B .. ':uns'
  if redis.call('EXISTS', k_uns) == 1 then hdel_all(k_uns, members) end
  for _, k in ipairs({ K_RES, K_ERR, K_PG, K_RA, K_GRP }) do
    if redis.call('HLEN', k) > 1 then hdel_all(k, members) end
  end
  -- Attempt history (K_HIST): no key while no attempt of the queue ever ended but by
  -- completing. The check is one command; deleting from a missing key is one too, but each
  -- member still crosses from Lua into Redis (a batch of retention is some 60 members).
  local k_hist = B .. ':hist'
  if redis.call('EXISTS', k_hist) == 1 then hdel_all(k_hist, members) end
  if not done then
    zrem_all(ks(st), members)
    zrem_all(kt(st), members)
    call_chunked('SREM', K_AGAIN, members, 1)
    return
  end
  local gone = #members
  if not taken then
    gone = 0
    for _, m in ipairs(members) do
      local e = done_entry(m)
      if e then
        local b = string.sub(m, 1, 14)
        gone = gone + redis.call('LREM', kdl(b), '1', e)
        if redis.call('EXISTS', kdl(b)) == 0 then redis.call('ZREM', K_CB, b) end
      end
      DONE[m] = false
    end
  end
  if gone > 0 then redis.call('DECRBY', K_CN, string.format('%d', gone)) end
end

-- The state of job m (whose `run` token is t), or nil.
local function state_of(m, t)
  if redis.call('ZSCORE', K_READY, m) then return 'ready' end
  if redis.call('ZSCORE', K_GALL, m) then return 'ready' end
  if t ~= '' and redis.call('ZSCORE', K_LEASE, m .. ':' .. t) then return 'running' end
  for _, st in ipairs({ 'scheduled', 'failed', 'cancelled' }) do
    if redis.call('ZSCORE', ks(st), m) then return st end
  end
  if done_entry(m) then return 'completed' end
  if t ~= '' then return nil end
  -- A job without a `run` entry in no set runs on a lease its reserve call implies (see
  -- K_RC), or never ran and is in a ready list (see `ready_take`).
  if lease_token(B, m) then return 'running' end
  if redis.call('EXISTS', K_RL0, K_RLP) > 0 then return 'ready' end
  return nil
end

-- Whether lease l, just removed from the lease set if it was there, was its job's current
-- lease: its token is the job's latest, and the job is in no other index (a job is in
-- exactly one; a lease expired, released, cancelled or finished before has moved it on).
local function was_current(l)
  local m = lease_job(l)
  local lt = string.sub(l, 18)
  local r = redis.call('HGET', K_RUN, m)
  local _, _, t = run_fields(r)
  local s = redis.call('HGET', K_SPEC, m)
  if not s then return false end
  -- Without a `run` entry, the job's only lease is the one its reserve call implies: l, if l
  -- names it (the k-th job of the call, its last digit odd iff it has a unique key).
  if not r and #lt > 4 then
    local tok, v = string.sub(lt, 1, -5), tonumber(string.sub(lt, -4))
    local ms = redis.call('HGET', K_RC, 'm' .. tok)
    local k = (v - v % 2) / 2
    if ms and k > 0 and string.sub(ms, 16 * k - 15, 16 * k) == m
      and (v % 2 == 1) == (string.byte(s, 1) ~= 48) then
      t = lt
    end
  end
  if t == '' or t ~= lt then return false end
  return state_of(m, t) == nil
end

-- Jobs ms as field, value, ... lists (the names the client decodes), or false for a job that
-- does not exist; sts[i] is job i's state when the caller knows it. Each column is read with
-- one HMGET for the whole batch (a column holding no job, only its marker, is not read).
local function records(ms, sts)
  local n = #ms
  if n == 0 then return {} end
  local sp = hmget_all(K_SPEC, ms)
  local rn = hmget_all(K_RUN, ms)
  local cols = {}
  for _, c in ipairs({ { 'ra', K_RA }, { 'f', K_FIN }, { 'e', K_ERR }, { 'pg', K_PG },
    { 'r', K_RES }, { 'h', K_HIST }, { 'g', K_GRP } }) do
    if redis.call('HLEN', c[2]) > 1 then cols[#cols + 1] = { c[1], hmget_all(c[2], ms) } end
  end
  local out, ws, wseen, wlist = {}, {}, {}, {}
  local function want(w)
    if w ~= '' and not wseen[w] then
      wseen[w] = true
      wlist[#wlist + 1] = w
    end
  end
  for i = 1, n do
    out[i] = false
    local s = sp[i]
    if s then
      local m = ms[i]
      local r = rn[i]
      local _, _, t = run_fields(r)
      local st = sts[i] or state_of(m, t)
      -- A running job without a `run` entry runs on the one its lease implies (see K_RC).
      if st == 'running' and not r then
        t = lease_token(B, m) or ''
        r = implied_run(t)
      end
      -- A completed job's finish time is in its list entry, and its latest attempt when its
      -- `run` entry moved there.
      local fin = false
      if st == 'completed' then
        local e = done_entry(m)
        if e then
          local er
          fin, er = done_fields(e)
          if er ~= '' then r = er end
        end
      end
      local a, started, _, w = run_fields(r)
      if st then
        local rec = { 'sp', s, 'st', st, 'a', a }
        local function add(k, v)
          rec[#rec + 1] = k
          rec[#rec + 1] = v
        end
        if started ~= '' then add('s', started) end
        local mine = {}
        if fin then add('f', fin) end
        for _, c in ipairs(cols) do
          local v = c[2][i]
          if v then
            add(c[1], v)
            if c[1] == 'h' then
              for e in string.gmatch(v, '([^;]*);') do
                local x = string.match(e, '^%d+,(%d*),')
                if x and x ~= '' then mine[#mine + 1] = x end
              end
            end
          end
        end
        if st == 'running' then
          local le = redis.call('ZSCORE', K_LEASE, m .. ':' .. t)
          -- A started lease is scored its deadline + 0.5.
          if le then add('le', string.match(le, '^%d+')) end
        end
        -- The latest attempt is still in `run` (not in the history of ended attempts)
        -- while it runs and once it completed.
        if st == 'running' or st == 'completed' then
          add('w', w)
          if w ~= '' then mine[#mine + 1] = w end
        end
        for _, x in ipairs(mine) do want(x) end
        ws[i] = mine
        out[i] = rec
      end
    end
  end
  if #wlist > 0 then
    local names = hmget_all(K_WID, wlist)
    local by = {}
    for k, x in ipairs(wlist) do by[x] = names[k] or '' end
    for i = 1, n do
      local mine = ws[i]
      if mine and #mine > 0 then
        local wn = {}
        for _, x in ipairs(mine) do
          wn[#wn + 1] = x
          wn[#wn + 1] = by[x]
        end
        out[i][#out[i] + 1] = 'wn'
        out[i][#out[i] + 1] = wn
      end
    end
  end
  return out
end

-- Appends member, record for each job of `ms` (states `sts`) still stored, to `out`.
local function append_records(out, ms, sts)
  local recs = records(ms, sts)
  for i, m in ipairs(ms) do
    if recs[i] then
      out[#out + 1] = m
      out[#out + 1] = recs[i]
    end
  end
  return out
end

-- Job m as records() gives it, or nil. `st` is its state when the caller knows it.
local function record(m, st)
  return records({ m }, { st })[1] or nil
end

-- Cancels job m (now_s a string). Returns {0} not found, {1} cancelled, {2, state} already
-- final.
local function cancel_job(m, now_s)
  local s = redis.call('HGET', K_SPEC, m)
  if not s then return { 0 } end
  local r = redis.call('HGET', K_RUN, m)
  local _, _, t = run_fields(r)
  local st = state_of(m, t)
  if not st then return { 0 } end
  if st ~= 'ready' and st ~= 'scheduled' and st ~= 'running' then return { 2, st } end
  if st == 'ready' then
    local g = redis.call('HGET', K_GRP, m)
    if g then
      -- A job with a group (its group's turn goes when reserve finds the group empty).
      redis.call('ZREM', kg(g), m)
      redis.call('ZREM', K_GALL, m)
    else
      ready_remove(m, string.format('%d', -spec_fields(s)))
    end
    if not ready_any() and redis.call('ZCARD', K_GALL) == 0 then
      redis.call('DEL', K_WAKE)
    end
  elseif st == 'scheduled' then
    redis.call('ZREM', K_SCHED, m)
    redis.call('ZREM', ks('scheduled'), m)
  else
    if not r then
      -- Running on a lease its reserve call implies (see K_RC).
      t = lease_token(B, m) or ''
      r = implied_run(t)
      if r then keep_run(m, r, t) end
    end
    redis.call('ZREM', K_LEASE, m .. ':' .. t)
    archive(m, r, 'k', tonumber(now_s))
    if group_running() then unrun({ m }) end
    wake_freed(1, 0)
  end
  local _, _, _, u = spec_fields(s)
  release_unique(u, m)
  redis.call('SREM', K_AGAIN, m)
  col_set(K_FIN, m, now_s)
  redis.call('ZADD', kt('cancelled'), now_s, m)
  redis.call('ZADD', ks('cancelled'), m, m)
  return { 1 }
end

-- A batch of retries: retry_found gathers what each retry changes, retry_flush writes it,
-- each column and index once for the whole batch (a bulk retry after an incident is hundreds
-- of thousands of jobs). `keys` maps the unique keys taken in the batch to their job refs.
local function retry_batch()
  return { failed = {}, cancelled = {}, run = {}, ra = {}, ready = {}, made = {}, keys = {} }
end

-- Puts job m, found in final state st (spec s, started at `started`), back to ready
-- (run_at = now_s) with a fresh count of attempts, in batch b: only its unique key is written
-- now, the rest by retry_flush(b). Returns {1} retried, {2, state} not retryable, {3, job ref}
-- unique key held by another live job.
local function retry_found(b, m, s, started, st, now_s)
  if st ~= 'failed' and st ~= 'cancelled' then return { 2, st } end
  local pr, _, _, u = spec_fields(s)
  if u then
    -- A job retried earlier in the batch is not ready until the flush: unique_holder would
    -- take its key for stale.
    local h = b.keys[u] or unique_holder(u)
    if h and h ~= jk(m) then return { 3, h } end
    redis.call('HSET', K_UNIQ, u, jk(m))
    b.keys[u] = jk(m)
  end
  local d = b[st]
  d[#d + 1] = m
  local run, ra, ready = b.run, b.ra, b.ready
  run[#run + 1] = m
  run[#run + 1] = '0,' .. started .. ','
  ra[#ra + 1] = m
  ra[#ra + 1] = now_s
  ready[#ready + 1] = string.format('%d', -pr)
  ready[#ready + 1] = m
  b.made[#b.made + 1] = m
  return { 1 }
end

-- Writes the retries of batch b. Returns how many jobs it made ready, for the caller to wake
-- that many waiters once.
local function retry_flush(b)
  for _, st in ipairs({ 'failed', 'cancelled' }) do
    zrem_all(kt(st), b[st])
    zrem_all(ks(st), b[st])
  end
  hset_all(K_RUN, b.run)
  hset_all(K_RA, b.ra)
  hdel_all(K_FIN, b.made)
  make_ready(b.ready)
  call_chunked('SADD', K_AGAIN, b.made, 1)
  return #b.made
end

-- Puts failed or cancelled job m back to ready (run_at = now_s) with a fresh count of
-- attempts. Returns {0} not found, {1} retried, {2, state} not retryable, {3, job ref} unique
-- key held by another live job.
local function retry_job(m, now_s)
  local s = redis.call('HGET', K_SPEC, m)
  if not s then return { 0 } end
  local _, started, t = run_fields(redis.call('HGET', K_RUN, m))
  local st = state_of(m, t)
  if not st then return { 0 } end
  local b = retry_batch()
  local r = retry_found(b, m, s, started, st, now_s)
  wake(retry_flush(b))
  return r
end

-- Up to n members of state st past `bound` (a member, inclusive; nil for none), in member
-- order: ascending when asc, else descending. Scheduled and final states walk their `s:<state>`
-- index; ready jobs (K_READY, then K_GALL) are ordered by priority, then member, so each
-- priority's run is binary-searched for the bound, as is each ready list; running jobs are few (the workers' concurrency): the lease
-- set is read whole.
local function walk(st, bound, asc, n)
  local ms = {}
  if n <= 0 then return ms end
  if st == 'ready' then
    -- Ready jobs without a group, then those with one: two sets in the same order.
    for _, key in ipairs({ K_READY, K_GALL }) do
      local lo = '-inf'
      while true do
        local r = redis.call('ZRANGEBYSCORE', key, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
        if #r == 0 then break end
        local sc = r[2]
        local first = redis.call('ZCOUNT', key, '-inf', '(' .. sc)
        local stop = first + redis.call('ZCOUNT', key, sc, sc)
        -- a = the first rank whose member is past the bound (asc: >= bound; desc: > bound).
        local a, b = first, stop
        if bound then
          while a < b do
            local mid = math.floor((a + b) / 2)
            local x = redis.call('ZRANGE', key, mid, mid)[1]
            if x < bound or (not asc and x == bound) then a = mid + 1 else b = mid end
          end
        else
          if asc then a = first else a = stop end
        end
        if asc then
          local last = math.min(a + n, stop) - 1
          if a <= last then
            for _, m in ipairs(redis.call('ZRANGE', key, a, last)) do ms[#ms + 1] = m end
          end
        else
          local from = math.max(a - n, first)
          if from <= a - 1 then
            for _, m in ipairs(redis.call('ZRANGE', key, from, a - 1)) do ms[#ms + 1] = m end
          end
        end
        lo = '(' .. sc
      end
    end
    -- Then the lists, each in member order: the bound is binary-searched by index.
    for _, sc in ipairs(list_scores()) do
      local key = K_RL .. sc
      local stop = redis.call('LLEN', key)
      local a, b = 0, stop
      if bound then
        while a < b do
          local mid = math.floor((a + b) / 2)
          local x = redis.call('LINDEX', key, mid)
          if x < bound or (not asc and x == bound) then a = mid + 1 else b = mid end
        end
      elseif not asc then
        a = stop
      end
      local from, last = a, math.min(a + n, stop) - 1
      if not asc then from, last = math.max(a - n, 0), a - 1 end
      if from <= last then
        for _, m in ipairs(redis.call('LRANGE', key, from, last)) do ms[#ms + 1] = m end
      end
    end
  elseif st == 'running' then
    for _, l in ipairs(redis.call('ZRANGE', K_LEASE, 0, -1)) do
      if l ~= SENT then
        local m = lease_job(l)
        LEASE_TOK[m] = string.sub(l, 18)
        if not bound or (asc and m >= bound) or (not asc and m <= bound) then ms[#ms + 1] = m end
      end
    end
  elseif st == 'completed' then
    -- The lists from the bound's bucket on, a few buckets a command, until n jobs past the
    -- bound are found: the later buckets' jobs all come after them.
    local sub = string.sub
    local from = asc and '-inf' or '+inf'
    if bound then from = sub(bound, 1, 14) end
    while #ms < n do
      local bs
      if asc then
        bs = redis.call('ZRANGEBYSCORE', K_CB, from, '+inf', 'LIMIT', '0', '8')
      else
        bs = redis.call('ZREVRANGEBYSCORE', K_CB, from, '-inf', 'LIMIT', '0', '8')
      end
      if #bs == 0 then break end
      for _, b in ipairs(bs) do
        for _, e in ipairs(done_bucket(b)) do
          local m = b .. sub(e, 1, 2)
          if not bound or (asc and m >= bound) or (not asc and m <= bound) then ms[#ms + 1] = m end
        end
        if #ms >= n then break end
      end
      from = '(' .. bs[#bs]
    end
  else
    if asc then
      return redis.call('ZRANGEBYSCORE', ks(st), bound or '-inf', '+inf', 'LIMIT', 0, n)
    end
    return redis.call('ZREVRANGEBYSCORE', ks(st), bound or '+inf', '-inf', 'LIMIT', 0, n)
  end
  if asc then table.sort(ms) else table.sort(ms, function(x, y) return x > y end) end
  for i = #ms, n + 1, -1 do ms[i] = nil end
  return ms
end

-- A schedule's record, in its queue's hash B .. ':cron' by id: 'revision,paused (0 or 1),
-- next fire,last fire,runs,last job ref|' then the definition's JSON (times in ms, '' for
-- none). Returns its fields as a table (strings, but paused: a boolean), or nil.
local function cron_read(s)
  if not s then return nil end
  local rev, p, nx, lf, runs, lj, at =
    string.match(s, '^(%d+),([01]),(-?%d*),(-?%d*),(%d+),([^|]*)|()')
  if not rev then return nil end
  return { rev = rev, paused = p == '1', next = nx, lf = lf, runs = runs, lj = lj,
    def = string.sub(s, at) }
end

-- Stores record r of schedule id in the queue at `base`, and its place in the queue's due set
-- (B .. ':crondue', by next fire: unpaused schedules with a cursor only).
local function cron_write(base, id, r)
  local p = '0'
  if r.paused then p = '1' end
  redis.call('HSET', base .. ':cron', id,
    r.rev .. ',' .. p .. ',' .. r.next .. ',' .. r.lf .. ',' .. r.runs .. ',' .. r.lj .. '|' .. r.def)
  if r.paused or r.next == '' then
    redis.call('ZREM', base .. ':crondue', id)
  else
    redis.call('ZADD', base .. ':crondue', r.next, id)
  end
end

-- Whether the job a job ref names is scheduled, ready or running.
local function ref_live(ref)
  local base, m = string.match(ref, '^(.*):j:(%d+)$')
  return base ~= nil and is_live(base, m)
end

-- ==== script body ====
