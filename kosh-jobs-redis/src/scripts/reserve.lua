-- reserve: leases up to `max` jobs of one queue.
-- ARGV: now, max, lease_ms, the calling process's origin (for its wake-up token), the worker's
--   number in the queue (`wid`, for the attempt history; '' when the client does not know it
--   yet), then the worker's id when the number is ''.
-- Returns { next_due, lease_deadline, tok, r, w, the members of the jobs leased (16 bytes
--           each, concatenated: one value of the reply, not one per job, each of which Redis
--           converts), then per job its spec; then r triples for the jobs that ran before:
--           k, attempt, progress | false }. The k-th
--           job (from 1) is on attempt 1 unless listed; its token is tok * 10000 + 2k, plus 1
--           when its spec has a unique key. A first attempt sends no more than it must. w is
--           the worker's number when the client passed '' and a job was leased, else false.
-- next_due is a time, false (nothing pending), or 'x' (not computed: the queue may have more).

-- The usual path: a queue that is not paused, has no flow limits (nor a hold), no group with
-- ready jobs, no job that ran before waiting, no expired lease and no scheduled job due, and
-- a worker whose number the client knows. What the general path below does then, with the
-- few definitions it needs: the others come after the cold line (see scripts.rs), and a call
-- that returns here never creates them (each costs every call that runs its definition).
-- Otherwise nothing was written and the general path decides, asking again. The first
-- `EXISTS` also asks whether any ready job is elsewhere than in the default list (see
-- `ready_take`): usually not, and then that list is all there is to read.
local only0 = redis.call('EXISTS', K_PAUSED, K_LIM, K_GTURNS, K_AGAIN, K_READY, K_RLP) == 0
if ARGV[5] ~= '' and (only0 or redis.call('EXISTS', K_PAUSED, K_LIM, K_GTURNS, K_AGAIN) == 0)
  and not redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', ARGV[1] .. '.5', 'LIMIT', '0', '1')[1]
  and not redis.call('ZRANGEBYSCORE', K_SCHED, '-inf', ARGV[1], 'LIMIT', '0', '1')[1] then
  local now_s, max_s, w_s = ARGV[1], ARGV[2], ARGV[5]
  local now, max, lease = tonumber(now_s), tonumber(max_s), tonumber(ARGV[3])
  local ms, more
  if only0 then
    ms, more = ready_take0(max_s)
  else
    ms, more = ready_take(max, max_s)
  end
  local n = #ms
  local out = { 'x', false, false, 0, false, '' }
  local earliest = false
  if n > 0 then
    local tok = redis.call('INCR', B .. ':tok')
    out[3] = tok
    local tok_s = string.format('%d', tok)
    local le = string.format('%d', now + lease)
    out[2] = le
    local specs = hmget_all(K_SPEC, ms)
    local leases = {}
    local mm = {} -- the members, concatenated into out[6]
    local o, l, k = 6, 0, 0
    local lease_tok = ':' .. tok_s
    local byte = string.byte
    local P2 = n > FEW and p2()
    for i = 1, n do
      local s = specs[i]
      if s then
        local m = ms[i]
        k = k + 1
        local v = 2 * k
        if byte(s, 1) ~= 48 then v = v + 1 end -- a unique key (see the spec format in lib.lua)
        local v2 = v % 100
        local d = P2 and P2[(v - v2) / 100 + 1] .. P2[v2 + 1] or four(v)
        leases[l + 1] = le
        leases[l + 2] = m .. lease_tok .. d
        l = l + 2
        mm[k] = m
        out[o + 1] = s
        o = o + 1
      end
    end
    out[6] = table.concat(mm)
    if l > 0 then
      earliest = redis.call('ZCOUNT', K_LEASE, '-inf', le .. '.5') == 0
    end
    zadd_leases(leases)
    -- Every job on its first attempt: their `run` entries are implied (see K_RC).
    if k > 0 then
      redis.call('HSET', K_RC, tok_s, now_s .. ',,' .. w_s, 'n' .. tok_s, string.format('%d', k),
        'm' .. tok_s, out[6])
    end
  end
  if not more then redis.call('DEL', K_WAKE) end
  if earliest then wake(1, 's:' .. ARGV[4]) end
  if n < max then out[1] = next_due(nil) end
  return out
end
-- ==== cold: what only the other paths need ====

local now_s = ARGV[1]
local now = tonumber(now_s)
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
-- Three keys that usually do not exist, asked about at once: a paused flag, groups with
-- ready jobs, jobs that ran before. When none does, and nothing below can have made the last
-- two (no lease recovered, no job promoted, no group given its turn back), neither is looked
-- up again.
local rare = redis.call('EXISTS', K_PAUSED, K_GTURNS, K_AGAIN) > 0
if rare and redis.call('EXISTS', K_PAUSED) == 1 then
  -- Nothing is due for a paused queue (resuming wakes waiters): a due time here would make
  -- idle workers spin on it.
  redis.call('DEL', K_WAKE)
  return { false, false, false }
end
if recover(now_s, '1000') > 0 then rare = true end
if promote(now_s, '1000') > 0 then rare = true end
-- Flow limits: one lookup, all the cost for a queue without them. `take` is what the caller
-- wants, capped by the room the limits leave (rc, rr: concurrency and rate room, or nil).
local lim = redis.call('HMGET', K_LIM, 'c', 'rm', 'rp', 'g', 'h', 'gm', 'gp')
if lim[5] then
  if tonumber(lim[5]) > now then
    -- Held: nothing starts before the hold ends, when the caller is to look again (its
    -- wake-up tokens are stale till then).
    redis.call('DEL', K_WAKE)
    return { lim[5], false, false }
  end
  redis.call('HDEL', K_LIM, 'h')
end
local take, take_s, rc, rr = max, ARGV[2], nil, nil
if lim[1] or lim[2] then
  rc, rr = flow_room(lim, now)
  if rc and rc < take then take = rc end
  if rr and rr < take then take = rr end
  take_s = string.format('%d', take)
end
-- A group rate: the parked groups whose window opened get their turns back first.
local gr = group_rate(lim)
if gr then
  rare = true
  unpark(redis.call('ZRANGEBYSCORE', K_GPARK, '-inf', now_s, 'LIMIT', '0', '1000'))
end
-- Groups take turns (kosh_jobs_core::limits#groups): up to `take` jobs, each the head of the
-- lane with the lowest turn that has a job and room (the jobs without a group are one lane,
-- turn `u` of K_GLANE, winning ties); the served lane goes to the back (the next turn). The
-- groups at their limit (`cap`; nil: none) keep their place at the front and are skipped, at
-- most as many as running jobs, each read once a call (`skip`); a group found without ready
-- jobs is dropped, each such entry read once. Under a group rate (`gr`), a group whose
-- window is full (its log read once per look, counting the starts taken here) is parked: out
-- of the turns until its window opens (`unpark`), so no later reserve reads it. Returns the
-- members (removed from the ready sets), their groups (false: none), and whether jobs may be
-- left that could start now (under a group limit this is looked up once the batch is full,
-- so a reserve that leaves only held-back jobs deletes the wake-up tokens: a token left
-- would wake a waiter into an empty reserve).
local function take_turns(take, cap, gr)
  local ms, gs = {}, {}
  if take <= 0 then return ms, gs, true end
  local lane = redis.call('HMGET', K_GLANE, 'u', 'n')
  local ut, nt = tonumber(lane[1]) or 0, tonumber(lane[2]) or 0
  local skip = 0      -- entries at the front of the turns found at their limit
  local running = {}  -- group -> its running jobs, with those taken here (only with a cap)
  local cand = nil    -- the next group's { group, turn, head }; false: none; nil: look
  local uhead = nil   -- the head of the jobs without a group; false: none; nil: look
  local usc = false   -- the score of the list that holds uhead (false: the sorted set)
  local grouped = {}  -- the members taken from groups, to leave K_GALL
  local started = {}  -- group -> jobs taken here (only with a group rate)
  local function look()
    cand = false
    while true do
      local r = redis.call('ZRANGE', K_GTURNS, string.format('%d', skip),
        string.format('%d', skip), 'WITHSCORES')
      if #r == 0 then break end
      local g = r[1]
      local full = false
      if cap then
        local c = running[g]
        if not c then
          c = tonumber(redis.call('HGET', K_GRUN, g)) or 0
          running[g] = c
        end
        full = c >= cap
      end
      if full then
        skip = skip + 1
      else
        local h = redis.call('ZRANGE', kg(g), '0', '0')[1]
        local opens = nil
        if h and gr then opens = group_opens(g, gr, started[g] or 0, now) end
        if opens then
          redis.call('ZREM', K_GTURNS, g)
          redis.call('ZADD', K_GPARK, string.format('%d', opens), g)
          redis.call('HSETNX', K_GPTURN, g, r[2])
        elseif h then
          cand = { g, tonumber(r[2]), h }
          break
        else
          redis.call('ZREM', K_GTURNS, g)
        end
      end
    end
  end
  while #ms < take do
    if cand == nil then look() end
    if uhead == nil then uhead, usc = ready_first() end
    if not cand and not uhead then break end
    nt = nt + 1
    if cand and (not uhead or cand[2] < ut) then
      local g, m = cand[1], cand[3]
      redis.call('ZREM', kg(g), m)
      -- To the back of the line; kept while empty, so a job arriving soon keeps its place.
      redis.call('ZADD', K_GTURNS, string.format('%d', nt), g)
      ms[#ms + 1] = m
      gs[#gs + 1] = g
      grouped[#grouped + 1] = m
      if cap then running[g] = running[g] + 1 end
      if gr then started[g] = (started[g] or 0) + 1 end
      cand = nil
    else
      ready_drop(uhead, usc)
      ms[#ms + 1] = uhead
      gs[#gs + 1] = false
      ut = nt
      uhead = nil
    end
  end
  if #ms > 0 then
    zrem_all(K_GALL, grouped)
    redis.call('HSET', K_GLANE, 'u', string.format('%d', ut), 'n', string.format('%d', nt))
  end
  local more = #ms == take
  if more and (cap or gr) then
    if cand == nil then look() end
    if uhead == nil then uhead = ready_first() end
    more = (cand or uhead) and true or false
  end
  return ms, gs, more
end

-- Logs the starts of the jobs leased from groups (ms[i] of group gs[i], leased when specs[i];
-- `order`: the groups, in the order first taken) for the group rate: each group's log gets
-- its starts and keeps its last gr[1], a start that fills the window records when it opens
-- (K_GFULL), and the groups whose latest start left the window are forgotten, at most two per
-- group logged here and eight more: each log is forgotten once, so the upkeep per start is
-- constant and the logs never outgrow the groups started within a window.
local function log_group_starts(ms, gs, specs, order, tok_s)
  local by = {}
  for i = 1, #ms do
    local g = gs[i]
    if g and specs[i] then
      local l = by[g]
      if not l then
        l = {}
        by[g] = l
      end
      l[#l + 1] = now_s
      l[#l + 1] = ms[i] .. ':' .. tok_s
    end
  end
  local keep = string.format('%d', -gr[1] - 1)
  local latest = {}
  for _, g in ipairs(order) do
    local k = kgl(g)
    zadd_all(k, by[g])
    redis.call('ZREMRANGEBYRANK', k, '0', keep)
    local opens = group_opens(g, gr, 0, now)
    if opens then redis.call('ZADD', K_GFULL, string.format('%d', opens), g) end
    latest[#latest + 1] = now_s
    latest[#latest + 1] = g
  end
  zadd_all(K_GLOGS, latest)
  local old = redis.call('ZRANGEBYSCORE', K_GLOGS, '-inf', string.format('%d', now - gr[2]),
    'LIMIT', '0', string.format('%d', 2 * #order + 8))
  if #old > 0 then
    local keys = {}
    for i, g in ipairs(old) do keys[i] = kgl(g) end
    redis.call('DEL', unpack(keys))
    zrem_all(K_GLOGS, old)
    zrem_all(K_GFULL, old)
  end
end

local ms, more
local gs = nil -- on the groups' path: each job's group, or false
if not rare or redis.call('EXISTS', K_GTURNS) == 0 then
  -- No group has ready jobs: the first `take` ready jobs.
  ms, more = ready_take(take, take_s)
else
  ms, gs, more = take_turns(take, tonumber(lim[4]), gr)
end
local n = #ms
local out = { 'x', false, false, 0, false, '' }
local k = 0 -- jobs leased
local earliest = false -- whether the leases taken end before all others
if n > 0 then
  -- Tokens come from a per-queue counter of reserve calls (from 1): the k-th job's token is
  -- tok * 10000 + 2k, plus 1 when its spec has a unique key, so unique among the queue's
  -- leases. Written as tok's digits then four more: no number is formatted per job.
  local tok = redis.call('INCR', B .. ':tok')
  out[3] = tok
  local tok_s = string.format('%d', tok)
  -- Numbers become strings once each (Lua formats them with sprintf on every use).
  local le = string.format('%d', now + lease)
  out[2] = le
  -- The worker's number in this queue: the client passes it once it knows it. Otherwise it
  -- is looked up, or given on the worker's first lease here, and returned.
  local w_s = ARGV[5]
  if w_s == '' then
    local kw, wk = B .. ':wid', 'n:' .. ARGV[6] -- K_WID, built only here (see lib.lua)
    w_s = redis.call('HGET', kw, wk)
    if not w_s then
      w_s = string.format('%d', redis.call('HINCRBY', kw, 'n', 1))
      redis.call('HSET', kw, wk, w_s, w_s, ARGV[6])
    end
    out[5] = w_s
  end
  local run_end = ',' .. w_s
  local specs = hmget_all(K_SPEC, ms)
  -- Only a job that ran before has a `run` entry to count on, or progress it reported; most
  -- batches have none. Those that have leave the `again` set as they are leased.
  local runs, again = {}, {}
  if rare and redis.call('SCARD', K_AGAIN) > 0 then
    runs = hmget_all(K_RUN, ms)
    for i = 1, n do
      if runs[i] then again[#again + 1] = ms[i] end
    end
    call_chunked('SREM', K_AGAIN, again, 1)
  end
  local pgs = {}
  if #again > 0 then
    local got = hmget_all(K_PG, again)
    for k, m in ipairs(again) do pgs[m] = got[k] end
  end
  local leases, rn = {}, {}
  -- `run` entries only when a job ran before; otherwise they are implied (see K_RC).
  local write_runs = #again > 0
  local rep = {}
  local mm = {} -- the members, concatenated into out[6]
  local o, l, r = 6, 0, 0
  -- Per job, the loop below builds two strings; what they share is built once: the lease
  -- entry is member .. lease_tok .. 4 digits, the run entry attempts .. run_mid .. 4 digits
  -- .. run_end (fewer pieces to concatenate).
  local lease_tok, run_mid = ':' .. tok_s, ',' .. now_s .. ',' .. tok_s
  local byte = string.byte
  local P2 = n > FEW and p2()
  for i = 1, n do
    local s = specs[i]
    if s then
      local m = ms[i]
      -- Attempts as text too: concatenating a Lua number formats it with sprintf('%.14g').
      local a, a_s = 1, '1'
      local ri = runs[i]
      if ri then
        a = run_fields(ri) + 1
        a_s = string.format('%d', a)
      end
      k = k + 1
      local v = 2 * k
      if byte(s, 1) ~= 48 then v = v + 1 end -- a unique key (see the spec format in lib.lua)
      local v2 = v % 100
      local d = P2 and P2[(v - v2) / 100 + 1] .. P2[v2 + 1] or four(v)
      leases[l + 1] = le
      leases[l + 2] = m .. lease_tok .. d
      l = l + 2
      if write_runs then
        rn[r + 1] = m
        rn[r + 2] = a_s .. run_mid .. d .. run_end
        r = r + 2
      end
      mm[k] = m
      out[o + 1] = s
      o = o + 1
      if ri then
        rep[#rep + 1] = k
        rep[#rep + 1] = a
        rep[#rep + 1] = pgs[m] or false
      end
    end
  end
  out[6] = table.concat(mm)
  out[4] = #rep / 3
  for j = 1, #rep do out[o + j] = rep[j] end
  -- Whether these leases end before every other lease of the queue: idle waiters of other
  -- processes sleep until the earliest deadline they know of (next_due), so they must hear
  -- of an earlier one, or a dead worker's job would wait for their next look. With one lease
  -- length for all workers this is only the first lease after none.
  if l > 0 then
    -- None ends by then: no lease scored at most le + 0.5 (a started lease is scored its
    -- deadline + 0.5; the marker +inf). A count, not the first score: a double reply is
    -- formatted with sprintf.
    earliest = redis.call('ZCOUNT', K_LEASE, '-inf', le .. '.5') == 0
  end
  zadd_leases(leases)
  if write_runs then
    hset_all(K_RUN, rn)
  elseif k > 0 then
    -- Every job on its first attempt: their `run` entries are implied (see K_RC).
    redis.call('HSET', K_RC, tok_s, now_s .. ',,' .. w_s, 'n' .. tok_s, string.format('%d', k),
      'm' .. tok_s, out[6])
  end
  if gs then
    -- Each leased job with a group takes one of its group's slots until it leaves `running`.
    local by, order = {}, {}
    for i = 1, n do
      local g = gs[i]
      if g and specs[i] then
        if not by[g] then
          by[g] = 0
          order[#order + 1] = g
        end
        by[g] = by[g] + 1
      end
    end
    for _, g in ipairs(order) do
      redis.call('HINCRBY', K_GRUN, g, string.format('%d', by[g]))
    end
    if gr then log_group_starts(ms, gs, specs, order, tok_s) end
  end
  if rr and k > 0 then
    -- The rate limit's log: one start per job leased, the last `rm` kept.
    local st = {}
    for j = 2, l, 2 do
      st[j - 1] = now_s
      st[j] = leases[j]
    end
    zadd_all(K_STARTS, st)
    redis.call('ZREMRANGEBYRANK', K_STARTS, '0', string.format('%d', -tonumber(lim[2]) - 1))
  end
end
-- Jobs left that the limits hold back now, and until when the rate limit holds them (nil:
-- until a running job ends, which wakes waiters, see wake_freed). Held back by none of the
-- queue's limits, the jobs left may be those of parked groups: until the first window opens.
local held, held_until = false, nil
if more then
  local c_full = rc and rc <= k
  if c_full or (rr and rr <= k) then
    held = true
    if not c_full and n < max then held_until = rate_opens(lim, now) or nil end
  end
end
if held or not more then
  -- Nothing left to take: stale wake-up tokens would only cause empty reserves.
  redis.call('DEL', K_WAKE)
end
if earliest then wake(1, 's:' .. ARGV[4]) end
if n < max then
  -- The caller is about to wait: tell it until when.
  if gr and not held then held_until = parked_opens(tonumber(lim[4]), now) end
  out[1] = next_due(held_until)
end
return out
