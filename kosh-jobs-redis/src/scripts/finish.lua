-- finish: ends attempts whose lease is current.
-- ARGV: now, keep_age_ms (-1 = forever), keep_count (-1 = unlimited), origin, the minute of
--   now (its start, for the throughput counters), count of plain completions, how many of
--   them hold a unique key (they come last: their tokens are odd), then the plain completions'
--   leases ('<member>:<token>', completed without a result), then
--   per other item: lease, kind, and for kind c: result JSON; f?: error; r?: error, retry_at,
--   where ? is the attempt's code in the history (r, f, t or p: see `archive`); ss: '' (no
--   error), until (a snooze: waits again like a retry, but the attempt is not counted, as in
--   `release`, and no error is kept).
-- Returns one 1 (applied) or 0 (lease lost) per item, plain completions first; or, when
-- every item was applied (the usual case), their count alone: a reply of one integer instead
-- of a table of ones, each of which crosses from Lua into Redis's reply.
local now_s = ARGV[1]
local now = tonumber(now_s)
local keep_age = tonumber(ARGV[2])
local keep_count = tonumber(ARGV[3])
local origin = ARGV[4]
local minute = ARGV[5]
local plain = tonumber(ARGV[6])
local plain_unique = tonumber(ARGV[7])
-- What follows the last two digits of a completed job's member in its list entry (see
-- `kdl`), before its `run` entry: its finish time.
local at = ',' .. now_s .. ','

-- Retention of completed jobs, oldest first: beyond keep_count, then older than keep_age.
-- `total`: how many are completed. Bounded work per call; every call that completes jobs
-- continues it. The oldest are the first of the lowest bucket's list (a bucket's jobs in the
-- order they completed).
local function retain(total)
  local gone, budget = {}, 1000
  local b = nil
  local sub = string.sub
  -- Takes the first k entries of the lowest bucket, noting their jobs in `gone`; false when
  -- no bucket is left.
  local function take(k)
    b = b or redis.call('ZRANGE', K_CB, '0', '0')[1]
    if not b then return false end
    local es = redis.call('LPOP', kdl(b), string.format('%d', k))
    if es then
      for _, e in ipairs(es) do gone[#gone + 1] = b .. sub(e, 1, 2) end
    end
    -- The list is gone once emptied: the next bucket comes next.
    if not es or #es < k then
      redis.call('ZREM', K_CB, b)
      b = nil
    end
    budget = budget - k
    return true
  end
  if keep_count >= 0 then
    local excess = total - keep_count
    if excess > budget then excess = budget end
    while excess > 0 do
      local n = #gone
      if not take(excess) then break end
      excess = excess - (#gone - n)
    end
  end
  if keep_age >= 0 then
    local cutoff = now - keep_age
    -- The oldest job first: usually young enough, and then nothing more is read.
    while budget > 0 do
      b = b or redis.call('ZRANGE', K_CB, '0', '0')[1]
      if not b then break end
      local h = redis.call('LINDEX', kdl(b), '0')
      local fh = h and tonumber((done_fields(h)))
      if fh and fh >= cutoff then break end
      local es = redis.call('LRANGE', kdl(b), '0', '99')
      local k = 0
      for _, e in ipairs(es) do
        local f = tonumber((done_fields(e)))
        if f and f >= cutoff then break end
        k = k + 1
      end
      if k == 0 and #es > 0 then break end
      take(k > 0 and k or 1)
      if k < #es then break end
    end
  end
  if #gone > 0 then delete_jobs('completed', gone, true) end
end

-- Releases the unique key job m holds (its lease said it holds one).
local function release_unique_of(m)
  local s = redis.call('HGET', K_SPEC, m)
  if s then
    local _, _, _, u = spec_fields(s)
    release_unique(u, m)
  end
end

-- The plain completions, all with current leases: their leases into co (from index 1), and
-- their unique keys released (the client puts the leases holding one last). Both paths use
-- it, once a call.
local function complete_plain(co)
  local argv = ARGV
  local first_unique = plain - plain_unique + 1
  for k = 1, plain do
    local l = argv[7 + k]
    co[k] = l
    if k >= first_unique then release_unique_of(string.sub(l, 1, 16)) end
  end
end

-- Completes the jobs of leases ls (n of them, n_s: n as a string): each one's entry goes in
-- its bucket's list (see `kdl`) with its `run` entry, the one its reserve call implies (see
-- K_RC) or, when that call wrote entries, its K_RUN entry, moved. A bucket whose list this
-- call starts is noted in K_CB. Returns how many jobs are completed now.
local function write_done(ls, n_s)
  local sub = string.sub
  -- The reserve calls of the leases (token prefixes), and how many of each end here.
  local toks, per, tl = {}, {}, {}
  for i = 1, #ls do
    local tok = sub(ls[i], 18, -5)
    tl[i] = tok
    local c = per[tok]
    if c then
      per[tok] = c + 1
    else
      per[tok] = 1
      toks[#toks + 1] = tok
    end
  end
  -- What follows the last two digits of a member in an entry, per call with a record.
  -- Each call's record and live leases, in one HMGET: a call whose last leases end here
  -- loses its record at once (one command, not two).
  local pre, missing, fs = {}, false, {}
  for j, tok in ipairs(toks) do
    fs[j + j - 1] = tok
    fs[j + j] = 'n' .. tok
  end
  local recs = redis.call('HMGET', K_RC, unpack(fs))
  for j, tok in ipairs(toks) do
    local c = recs[j + j - 1]
    if c then
      pre[tok] = at .. '1,' .. c
      rc_done(tok, per[tok], tonumber(recs[j + j]))
    else
      missing = true
    end
  end
  local runs = {}
  if missing then
    local mv, mi = {}, {}
    for i = 1, #ls do
      if not pre[tl[i]] then
        mv[#mv + 1] = sub(ls[i], 1, 16)
        mi[#mi + 1] = i
      end
    end
    if #mv > 0 then
      local rs = hmget_all(K_RUN, mv)
      hdel_all(K_RUN, mv)
      for k, i in ipairs(mi) do runs[i] = at .. (rs[k] or '') end
    end
  end
  return done_append(ls, pre, tl, runs, n_s)
end

-- The usual path: every item a plain completion, no job with a group running and no flow
-- limits, every lease current (their removal counts them all). What the general path below
-- does then, with the few definitions it needs: the others come after the cold line (see
-- scripts.rs), and a call that returns here never creates them. When a lease was not
-- current, the general path goes on from the removal, knowing its count.
local removed = nil
if #ARGV == 7 + plain and redis.call('EXISTS', K_GRUN, K_LIM) == 0 then
  removed = call_chunked('ZREM', K_LEASE, ARGV, 1, nil, 8, 7 + plain)
  if removed == plain then
    if plain > 0 then
      local co = {}
      complete_plain(co)
      local total = write_done(co, ARGV[6])
      count_ended('c', plain, ARGV[6], now, minute)
      retain(total)
    end
    return plain
  end
end
-- ==== cold: what only the other paths need ====

-- Plain completions are read from ARGV where they are; the other items go in parallel arrays
-- (no table per item): lease, kind, text, retry_at.
local ls, kinds, codes, texts, ras = {}, {}, {}, {}, {}
local o = 0
local i = 8 + plain
local nargs = #ARGV
while i <= nargs do
  o = o + 1
  ls[o] = ARGV[i]
  local kc = ARGV[i + 1]
  local kind = string.sub(kc, 1, 1)
  kinds[o] = kind
  codes[o] = string.sub(kc, 2, 2)
  texts[o] = ARGV[i + 2]
  if kind == 'r' or kind == 's' then
    ras[o] = ARGV[i + 3]
    i = i + 4
  else
    i = i + 3
  end
end
local n = plain + o

-- Which leases are current. Removing them all at once says how many were: when that is
-- every item (the usual case, and never with a lease given twice), none needs a lookup of
-- its own. Otherwise each is checked against what the removal left behind (`was_current`).
if not removed then removed = call_chunked('ZREM', K_LEASE, ARGV, 1, nil, 8, 7 + plain) end
removed = removed + call_chunked('ZREM', K_LEASE, ls, 1)
local all_current = removed == n
-- Leases already handled, so a lease given twice is applied once (only without all_current).
local used = {}
local out = {}
-- Jobs of the batch that left `running`, collected only while a job with a group runs (their
-- group slots are freed: see unrun).
local left = nil
-- Whether a job with a group runs (K_GRUN) or the queue has flow limits (K_LIM, read by
-- wake_freed): one EXISTS for both, usually 0.
local grun_or_lim = redis.call('EXISTS', K_GRUN, K_LIM) > 0
if grun_or_lim and group_running() then left = {} end
local co, res, rd, sc, sci = {}, {}, {}, {}, {}
local nc, nf = 0, 0
-- Items applied: when that is all of them, the reply is their count alone. `todo`: the items
-- left for the general loop.
local applied, todo = 0, n
if all_current and o == 0 and not left then
  -- Every item a plain completion whose lease was current (the usual batch, in a queue with
  -- flow limits or a group running): the loop below without what such items never need (no
  -- `out` entry, no lookups, no kind).
  complete_plain(co)
  nc = plain
  applied = n
  todo = 0
end
for k = 1, todo do
  local l, kind, text
  if k <= plain then
    l, kind, text = ARGV[7 + k], 'c', ''
  else
    local x = k - plain
    l, kind, text = ls[x], kinds[x], texts[x]
  end
  out[k] = 0
  local ok = all_current
  if not ok and not used[l] then
    used[l] = true
    ok = was_current(l)
  end
  if ok then
    local m = lease_job(l)
    if left then left[#left + 1] = m end
    if kind == 'c' then
      nc = nc + 1
      co[nc] = l
      if text ~= '' then
        res[#res + 1] = m
        res[#res + 1] = text
      end
      if holds_unique(l) then release_unique_of(m) end
      out[k] = 1
      applied = applied + 1
    else
      local s = redis.call('HGET', K_SPEC, m)
      -- A job without its spec is gone (only possible if Redis evicted keys): its lease
      -- is dropped and the caller told the lease was lost.
      if s then
        local pr, _, _, u = spec_fields(s)
        local t = string.sub(l, 18)
        local r, implied = run_of(m, t)
        if implied then keep_run(m, r, t) end
        local a, started = run_fields(r)
        archive(m, r, codes[k - plain], now)
        if kind == 's' then
          a = a - 1
          if a < 0 then a = 0 end
          col_set(K_RUN, m, a .. ',' .. started .. ',')
        else
          col_set(K_ERR, m, with_error(redis.call('HGET', K_ERR, m), a, text, now_s))
        end
        if kind == 'f' then
          to_failed(m, now_s, u)
          nf = nf + 1
        else
          local ra = ras[k - plain]
          col_set(K_RA, m, ra)
          if tonumber(ra) > now then
            sc[#sc + 1] = ra
            sc[#sc + 1] = m
            sci[#sci + 1] = m
            sci[#sci + 1] = m
          else
            rd[#rd + 1] = string.format('%d', -pr)
            rd[#rd + 1] = m
          end
        end
        out[k] = 1
        applied = applied + 1
      end
    end
  end
end
local total = nil
if nc > 0 then
  -- Usually every item is a plain completion: their count is an argument already.
  local c_s = nc == plain and ARGV[6] or string.format('%d', nc)
  total = write_done(co, c_s)
  hset_all(K_RES, res)
  count_ended('c', nc, c_s, now, minute)
end
if nf > 0 then count_ended('f', nf, string.format('%d', nf), now, minute) end
if left then unrun(left) end
make_ready(rd)
ran_again(rd)
zadd_all(K_SCHED, sc)
ran_again(sc)
zadd_all(ks('scheduled'), sci)
-- Every applied item left `running` (completed, failed, ready or scheduled again): under a
-- concurrency limit each frees a slot.
if grun_or_lim then
  wake_freed(nc + nf + (#rd + #sc) / 2, #rd / 2)
else
  wake(#rd / 2) -- wake_freed without limits: only the jobs made ready
end
if #sc > 0 then wake(1, 's:' .. origin) end

if total then retain(total) end
if applied == n then return applied end
return out
