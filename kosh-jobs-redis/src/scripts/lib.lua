-- Shared prelude of every kosh-jobs script (prepended at compile time).
--
-- KEYS[1] is the queue's key base `{prefix:queue}`: every key below shares its hash tag, so
-- one script only ever touches one cluster slot. KEYS[2], for the scripts that handle unique
-- keys, is the unique-key hash: `{prefix}:uniq` on a single server (keys unique across
-- queues), `{prefix:queue}:uniq` on a cluster (unique per queue). A job's member is its sequence number,
-- zero-padded to 16 digits: members of equal score sort in enqueue order, and a member is
-- also a valid score (the `s:<state>` sets are scored by it). A running job's entry in the
-- lease set is `<member>:<token>`, so checking a lease is one lookup in that set.
local B = KEYS[1]
local K_READY = B .. ':ready'     -- ZSET score -priority: ready jobs, in reserve order
local K_SCHED = B .. ':sched'     -- ZSET score run_at: scheduled jobs
local K_LEASE = B .. ':lease'     -- ZSET score lease deadline, member '<member>:<token>'
local K_UNIQ = KEYS[2]            -- HASH unique key -> job key of the live job holding it
local K_PAUSED = B .. ':paused'   -- flag
local K_WAKE = B .. ':wake'       -- LIST of wake-up tokens for blocked waiters
local CHUNK = 1000                -- values per unpack(), far below Lua's limit
local WAKE_MAX = 64

local function ks(st) return B .. ':s:' .. st end   -- ZSET score = member: scheduled and final states
local function kt(st) return B .. ':t:' .. st end   -- ZSET score = finished_at: failed, cancelled
local function jk(m) return B .. ':j:' .. m end      -- HASH of one job

-- The job member of a lease entry.
local function lease_job(l) return string.sub(l, 1, 16) end

-- Lease tokens are odd when the job holds a unique key, so finishing it knows whether a key
-- must be released without reading the job first.
local function holds_unique(l) return string.byte(l, -1) % 2 == 1 end

-- ZADD key s1 m1 s2 m2 ... from a flat list, in chunks.
local function zadd_all(key, flat)
  local n = #flat
  local i = 1
  while i <= n do
    local j = math.min(i + 2 * CHUNK - 1, n)
    redis.call('ZADD', key, unpack(flat, i, j))
    i = j + 1
  end
end

-- ZREM key m1 m2 ... in chunks.
local function zrem_all(key, members)
  local n = #members
  local i = 1
  while i <= n do
    local j = math.min(i + CHUNK - 1, n)
    redis.call('ZREM', key, unpack(members, i, j))
    i = j + 1
  end
end

-- ZMSCORE in chunks: one score (or false) per member.
local function zmscore_all(key, members)
  local out = {}
  local n = #members
  local i = 1
  while i <= n do
    local j = math.min(i + CHUNK - 1, n)
    local r = redis.call('ZMSCORE', key, unpack(members, i, j))
    for k = i, j do out[k] = r[k - i + 1] end
    i = j + 1
  end
  return out
end

-- Lets up to n blocked waiters go (one token each), keeping at most WAKE_MAX tokens.
-- Tokens are '1' (jobs are ready) or 's:<origin>' (the earliest scheduled time moved; the
-- process `origin` that caused it knows already and ignores its own token).
local function wake(n, token)
  if n <= 0 then return end
  -- Waiters of a paused queue have nothing to take; resuming wakes them.
  if redis.call('EXISTS', K_PAUSED) == 1 then return end
  if n > WAKE_MAX then n = WAKE_MAX end
  token = token or '1'
  local t = {}
  for i = 1, n do t[i] = token end
  redis.call('RPUSH', K_WAKE, unpack(t))
  redis.call('LTRIM', K_WAKE, -WAKE_MAX, -1)
end

local LIVE = { scheduled = true, ready = true, running = true }

-- The job key of the live job holding unique key u, or nil (a stale entry is removed).
local function unique_holder(u)
  local h = redis.call('HGET', K_UNIQ, u)
  if not h then return nil end
  local st = redis.call('HGET', h, 'st')
  if st and LIVE[st] then return h end
  redis.call('HDEL', K_UNIQ, u)
  return nil
end

local function release_unique(u, m)
  if u and redis.call('HGET', K_UNIQ, u) == jk(m) then
    redis.call('HDEL', K_UNIQ, u)
  end
end

-- Appends one attempt's error to the comma-separated JSON objects in field `e`.
local function with_error(prev, attempt, msg, now_s)
  local e = '{"attempt":' .. attempt .. ',"error":' .. cjson.encode(msg) .. ',"at":' .. now_s .. '}'
  if prev and prev ~= '' then return prev .. ',' .. e end
  return e
end

-- Earliest time something may become ready by itself: the first scheduled run_at or the
-- first lease deadline (whose expiry makes the job ready again), as a string, or false.
local function next_due()
  local a = redis.call('ZRANGE', K_SCHED, 0, 0, 'WITHSCORES')[2]
  local b = redis.call('ZRANGE', K_LEASE, 0, 0, 'WITHSCORES')[2]
  if a and b then
    if tonumber(b) < tonumber(a) then return b end
    return a
  end
  return a or b or false
end

-- Moves jobs whose lease deadline is at or before now back to ready (or to failed when out of
-- attempts), recording `lease expired`. Returns how many were recovered.
local function recover(now, now_s, limit)
  local exp = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now, 'LIMIT', 0, limit)
  if #exp == 0 then return 0 end
  local rd, fl, fli = {}, {}, {}
  for _, l in ipairs(exp) do
    local m = lease_job(l)
    local k = jk(m)
    local f = redis.call('HMGET', k, 'a', 'ma', 'pr', 'u', 'e')
    if f[1] then
      local ne = with_error(f[5], f[1], 'lease expired', now_s)
      if tonumber(f[1]) >= tonumber(f[2]) then
        redis.call('HSET', k, 'st', 'failed', 'f', now_s, 'e', ne)
        release_unique(f[4], m)
        fl[#fl + 1] = now_s
        fl[#fl + 1] = m
        fli[#fli + 1] = m
        fli[#fli + 1] = m
      else
        redis.call('HSET', k, 'st', 'ready', 'e', ne)
        rd[#rd + 1] = -tonumber(f[3])
        rd[#rd + 1] = m
      end
    end
  end
  zrem_all(K_LEASE, exp)
  zadd_all(K_READY, rd)
  zadd_all(kt('failed'), fl)
  zadd_all(ks('failed'), fli)
  wake(#rd / 2)
  return #exp
end

-- Moves due scheduled jobs to ready. Returns how many.
local function promote(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K_SCHED, '-inf', now, 'LIMIT', 0, limit)
  if #due == 0 then return 0 end
  local rd = {}
  for _, m in ipairs(due) do
    local k = jk(m)
    local pr = redis.call('HGET', k, 'pr')
    if pr then
      redis.call('HSET', k, 'st', 'ready')
      rd[#rd + 1] = -tonumber(pr)
      rd[#rd + 1] = m
    end
  end
  zrem_all(K_SCHED, due)
  zrem_all(ks('scheduled'), due)
  zadd_all(K_READY, rd)
  return #due
end

-- Deletes finished jobs of one final state: their hashes and index entries.
local function delete_jobs(st, members)
  for _, m in ipairs(members) do
    redis.call('DEL', jk(m))
  end
  zrem_all(ks(st), members)
  if st ~= 'completed' then zrem_all(kt(st), members) end
end

-- ==== script body ====
