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
-- (ready, lease, s:<state>), so a state change never writes it twice.
local B = KEYS[1]
local K_READY = B .. ':ready'     -- ZSET score -priority: ready jobs, in reserve order
local K_SCHED = B .. ':sched'     -- ZSET score run_at: scheduled jobs
local K_LEASE = B .. ':lease'     -- ZSET score lease deadline, member '<member>:<token>'
local K_UNIQ = KEYS[2]            -- HASH unique key -> job ref of the live job holding it
local K_PAUSED = B .. ':paused'   -- flag
local K_WAKE = B .. ':wake'       -- LIST of wake-up tokens for blocked waiters
local K_SPEC = B .. ':spec'       -- HASH member -> spec (immutable, packed by the client)
local K_RUN = B .. ':run'         -- HASH member -> 'attempts,started_at,token'
local K_FIN = B .. ':fin'         -- HASH member -> finished_at (final states)
local K_RES = B .. ':res'         -- HASH member -> result JSON
local K_ERR = B .. ':err'         -- HASH member -> attempt errors (comma-separated JSON)
local K_PG = B .. ':pg'           -- HASH member -> progress JSON
local K_RA = B .. ':ra'           -- HASH member -> run_at, when a retry moved it
local K_AGAIN = B .. ':again'     -- SET: waiting jobs that ran before (their `run` counts);
                                  -- while empty, reserve reads no `run` entry
local CHUNK = 1000                -- values per unpack(), far below Lua's limit
local WAKE_MAX = 64
-- Numbers given to redis.call are formatted with sprintf('%.17g') (some 2,000 instructions
-- each, in Redis 7.0): arguments are passed as strings, written once where computed.
-- A member too long for Redis's compact encodings (listpack: at most 64 bytes a value), kept
-- in the lease set and the column hashes so they always use hash tables. Small listpacks
-- are searched linearly, which makes a batch of 64 lookups in a set of 128 quadratic.
local SENT = '~kosh-jobs: keeps this key in the hash-table encoding; not a job, never read'

-- '00' to '99', at P2[x + 1]: members and lease tokens are written with these, since a
-- string.format call costs about as much as a Redis command (some 2,500 instructions).
local P2 = {
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

local function ks(st) return B .. ':s:' .. st end   -- ZSET score = member: a state's jobs
local function kt(st) return B .. ':t:' .. st end   -- ZSET score = finished_at: failed, cancelled
-- A job's reference (in unique-key holders and replies): its queue base and member.
local function jk(m) return B .. ':j:' .. m end

-- The job member of a lease entry.
local function lease_job(l) return string.sub(l, 1, 16) end

-- Lease tokens are odd when the job holds a unique key, so finishing it knows whether a key
-- must be released without reading the job first.
local function holds_unique(l) return string.byte(l, -1) % 2 == 1 end

-- A spec is '<unique len>,<name len>,<priority>,<max attempts>,<created>,<run_at>|' then
-- the unique key, the name and the payload. Its first byte is not '0' iff it has a unique key.
local function spec_has_unique(s) return string.byte(s, 1) ~= 48 end

-- The fields of a spec the scripts use: priority, max attempts, run_at (numbers), unique key
-- (or nil).
local function spec_fields(s)
  local ul, pr, ma, ra, at = string.match(s, '^(%d+),%d+,(-?%d+),(%d+),%d+,(%d+)|()')
  if not ul then return 0, 1, 0, nil end
  ul = tonumber(ul)
  local u = nil
  if ul > 0 then u = string.sub(s, at, at + ul - 1) end
  return tonumber(pr), tonumber(ma), tonumber(ra), u
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

-- The attempts so far, started_at and token ('' when none) of a job's `run` entry.
local function run_fields(r)
  if not r then return 0, '', '' end
  local a, s, t = string.match(r, '^(%d+),(%d*),(%d*)$')
  if not a then return 0, '', '' end
  return tonumber(a), s, t
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

-- Whether job m of the queue at `base` is scheduled, ready or running.
local function is_live(base, m)
  if redis.call('ZSCORE', base .. ':ready', m) then return true end
  if redis.call('ZSCORE', base .. ':sched', m) then return true end
  local _, _, t = run_fields(redis.call('HGET', base .. ':run', m))
  return t ~= '' and redis.call('ZSCORE', base .. ':lease', m .. ':' .. t) ~= false
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

-- Earliest time something may become ready by itself: the first scheduled run_at or the
-- first lease deadline (whose expiry makes the job ready again), as a string, or false.
local function next_due()
  local a = redis.call('ZRANGE', K_SCHED, '0', '0', 'WITHSCORES')[2]
  local b = redis.call('ZRANGE', K_LEASE, '0', '0', 'WITHSCORES')[2]
  if b == 'inf' then b = nil end -- only the marker
  if a and b then
    if tonumber(b) < tonumber(a) then return b end
    return a
  end
  return a or b or false
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
local function recover(now_s, limit)
  local exp = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now_s, 'LIMIT', '0', limit)
  if #exp == 0 then return 0 end
  allow_writes()
  local rd = {}
  for _, l in ipairs(exp) do
    local m = lease_job(l)
    local s = redis.call('HGET', K_SPEC, m)
    if s then
      local pr, ma, _, u = spec_fields(s)
      local a = run_fields(redis.call('HGET', K_RUN, m))
      col_set(K_ERR, m, with_error(redis.call('HGET', K_ERR, m), a, 'lease expired', now_s))
      if a >= ma then
        to_failed(m, now_s, u)
      else
        rd[#rd + 1] = string.format('%d', -pr)
        rd[#rd + 1] = m
      end
    end
  end
  zrem_all(K_LEASE, exp)
  zadd_all(K_READY, rd)
  ran_again(rd)
  wake(#rd / 2)
  return #exp
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
  zadd_all(K_READY, rd)
  return #due
end

-- Deletes finished jobs of one final state: their columns and index entries. Columns that
-- hold no job (at most their marker) are skipped: results, errors, progress and moved
-- run_at are often never written. `oldest` says the members are the first of the state's
-- index, which is then trimmed by rank (the members need not cross into Redis again).
local function delete_jobs(st, members, oldest)
  hdel_all(K_SPEC, members)
  hdel_all(K_RUN, members)
  hdel_all(K_FIN, members)
  for _, k in ipairs({ K_RES, K_ERR, K_PG, K_RA }) do
    if redis.call('HLEN', k) > 1 then hdel_all(k, members) end
  end
  if oldest then
    redis.call('ZREMRANGEBYRANK', ks(st), '0', string.format('%d', #members - 1))
  else
    zrem_all(ks(st), members)
  end
  if st ~= 'completed' then
    zrem_all(kt(st), members)
    call_chunked('SREM', K_AGAIN, members, 1)
  end
end

-- The state of job m (whose `run` token is t), or nil.
local function state_of(m, t)
  if redis.call('ZSCORE', K_READY, m) then return 'ready' end
  if t ~= '' and redis.call('ZSCORE', K_LEASE, m .. ':' .. t) then return 'running' end
  for _, st in ipairs({ 'scheduled', 'completed', 'failed', 'cancelled' }) do
    if redis.call('ZSCORE', ks(st), m) then return st end
  end
  return nil
end

-- Whether lease l, just removed from the lease set if it was there, was its job's current
-- lease: its token is the job's latest, and the job is in no other index (a job is in
-- exactly one; a lease expired, released, cancelled or finished before has moved it on).
local function was_current(l)
  local m = lease_job(l)
  local _, _, t = run_fields(redis.call('HGET', K_RUN, m))
  if t == '' or t ~= string.sub(l, 18) then return false end
  if redis.call('HEXISTS', K_SPEC, m) == 0 then return false end
  return state_of(m, t) == nil
end

-- Job m as field, value, ... (the names the client decodes), or nil when it does not exist.
-- `st` is its state when the caller knows it.
local function record(m, st)
  local s = redis.call('HGET', K_SPEC, m)
  if not s then return nil end
  local a, started, t = run_fields(redis.call('HGET', K_RUN, m))
  st = st or state_of(m, t)
  if not st then return nil end
  local out = { 'sp', s, 'st', st, 'a', a }
  local function add(k, v)
    if v then
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  if started ~= '' then add('s', started) end
  add('ra', redis.call('HGET', K_RA, m))
  add('f', redis.call('HGET', K_FIN, m))
  add('e', redis.call('HGET', K_ERR, m))
  add('pg', redis.call('HGET', K_PG, m))
  add('r', redis.call('HGET', K_RES, m))
  if st == 'running' then add('le', redis.call('ZSCORE', K_LEASE, m .. ':' .. t)) end
  return out
end

-- ==== script body ====
