-- push: stores a batch of jobs, of one queue or (single server only) of several.
-- KEYS: the first queue's base, the unique-key hash, the global id counter (single server
--       only), then the bases of the other queues of the batch (single server only).
-- ARGV: now, origin, first sequence number ('' = take them from KEYS[3]), count, queues,
--       form ('p' = plain: every job ready now, without a unique key; 'f' = full), then per
--       job: [queue number (1 = KEYS[1], q > 1 = KEYS[q + 2]) when queues > 1,] spec,
--       ready score (-priority), and in the full form: run_at, unique ('' = none).
-- Job i (from 1) gets sequence number first + i - 1 unless its unique key is held.
-- Jobs are handled in batch order, so of two jobs with one unique key the first wins.
-- Returns { first sequence number, then per job whose key was held: i, the holder's job ref }.
local now_s = ARGV[1]
local now = tonumber(now_s)
local origin = ARGV[2]
local n = tonumber(ARGV[4])
local nq = tonumber(ARGV[5])
local base
if ARGV[3] == '' then
  base = redis.call('INCRBY', KEYS[3], ARGV[4]) - n
else
  base = tonumber(ARGV[3]) - 1
end
-- Per queue: its base, and the columns and index entries to write.
local qs = {}
for q = 1, nq do
  local b = KEYS[1]
  if q > 1 then b = KEYS[q + 2] end
  qs[q] = { b = b, sp = {}, rd = {}, sc = {}, sci = {}, earliest = nil }
end
local taken = {} -- unique key -> job ref, for keys taken earlier in this batch
local out = { base + 1 }
local full = ARGV[6] == 'f'
local a = 7
-- Members are '%016d' of base + i: 12 digits that change rarely, then 4 from digits4.
local lo = (base + 1) % 10000
local hi = (base + 1 - lo) / 10000
local hi_s = string.format('%012d', hi)
for i = 1, n do
  local q = qs[1]
  if nq > 1 then
    q = qs[tonumber(ARGV[a])]
    a = a + 1
  end
  local lo2 = lo % 100
  local m = hi_s .. P2[(lo - lo2) / 100 + 1] .. P2[lo2 + 1]
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
    a = a + 4
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
      local ra = tonumber(ra_s)
      if ra > now then
        q.sc[#q.sc + 1] = ra_s
        q.sc[#q.sc + 1] = m
        q.sci[#q.sci + 1] = m
        q.sci[#q.sci + 1] = m
        if q.earliest == nil or ra < q.earliest then q.earliest = ra end
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
  zadd_all(b .. ':ready', q.rd)
  wake_queue(b, #q.rd / 2)
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
return out
