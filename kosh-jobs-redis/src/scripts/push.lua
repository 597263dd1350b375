-- push: stores a batch of jobs of one queue.
-- KEYS: queue base, unique-key hash, and (single server only) the global id counter.
-- ARGV: now, origin, first sequence number ('' = take them from KEYS[3]), count,
--       then per job: name, payload, priority, run_at, max_attempts, unique ('' = none)
-- Returns a flat list per job: member and 0 (new), or the holder's job key and 1 (existing).
local now_s = ARGV[1]
local now = tonumber(now_s)
local origin = ARGV[2]
local n = tonumber(ARGV[4])
local base
if ARGV[3] == '' then
  base = redis.call('INCRBY', KEYS[3], n) - n
else
  base = tonumber(ARGV[3]) - 1
end
local out = {}
local rd, sc, sci = {}, {}, {}
local earliest_before = redis.call('ZRANGE', K_SCHED, 0, 0, 'WITHSCORES')[2]
local earliest_new = nil
for i = 0, n - 1 do
  local b = 5 + i * 6
  local u = ARGV[b + 5]
  local holder = nil
  if u ~= '' then holder = unique_holder(u) end
  if holder then
    out[#out + 1] = holder
    out[#out + 1] = 1
  else
    local m = string.format('%016d', base + i + 1)
    local ra = tonumber(ARGV[b + 3])
    local st = 'ready'
    if ra > now then st = 'scheduled' end
    local k = jk(m)
    if u ~= '' then
      redis.call('HSET', k, 'n', ARGV[b], 'p', ARGV[b + 1], 'pr', ARGV[b + 2], 'ra', ARGV[b + 3],
        'a', 0, 'ma', ARGV[b + 4], 'c', now_s, 'st', st, 'u', u)
      redis.call('HSET', K_UNIQ, u, k)
    else
      redis.call('HSET', k, 'n', ARGV[b], 'p', ARGV[b + 1], 'pr', ARGV[b + 2], 'ra', ARGV[b + 3],
        'a', 0, 'ma', ARGV[b + 4], 'c', now_s, 'st', st)
    end
    if st == 'ready' then
      rd[#rd + 1] = -tonumber(ARGV[b + 2])
      rd[#rd + 1] = m
    else
      sc[#sc + 1] = ARGV[b + 3]
      sc[#sc + 1] = m
      sci[#sci + 1] = m
      sci[#sci + 1] = m
      if earliest_new == nil or ra < earliest_new then earliest_new = ra end
    end
    out[#out + 1] = m
    out[#out + 1] = 0
  end
end
zadd_all(K_READY, rd)
zadd_all(K_SCHED, sc)
zadd_all(ks('scheduled'), sci)
wake(#rd / 2)
-- A new earliest scheduled job changes when waiters (of other processes) must wake up.
if earliest_new and (not earliest_before or earliest_new < tonumber(earliest_before)) then
  wake(1, 's:' .. origin)
end
return out
