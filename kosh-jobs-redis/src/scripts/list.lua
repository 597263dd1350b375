-- list: jobs of one state from a member on, by member (= id order within the queue).
-- ARGV: state, min member (inclusive), limit. Returns member, {record fields} per job.
local st, min_m, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ms = {}
if st == 'ready' then
  -- The ready set is ordered by priority, then member: within each priority the members are
  -- sorted, so binary-search each priority's run for min_m and take up to limit from there.
  local lo = '-inf'
  while true do
    local r = redis.call('ZRANGEBYSCORE', K_READY, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #r == 0 then break end
    local s = r[2]
    local first = redis.call('ZCOUNT', K_READY, '-inf', '(' .. s)
    local stop = first + redis.call('ZCOUNT', K_READY, s, s)
    local a, b = first, stop
    while a < b do
      local mid = math.floor((a + b) / 2)
      if redis.call('ZRANGE', K_READY, mid, mid)[1] < min_m then a = mid + 1 else b = mid end
    end
    local last = math.min(a + limit, stop) - 1
    if a <= last then
      for _, m in ipairs(redis.call('ZRANGE', K_READY, a, last)) do ms[#ms + 1] = m end
    end
    lo = '(' .. s
  end
  table.sort(ms)
elseif st == 'running' then
  -- Running jobs are few (at most the workers' concurrency): scan the lease set.
  for _, l in ipairs(redis.call('ZRANGE', K_LEASE, 0, -1)) do
    if l ~= SENT then
      local m = lease_job(l)
      if m >= min_m then ms[#ms + 1] = m end
    end
  end
  table.sort(ms)
else
  ms = redis.call('ZRANGEBYSCORE', ks(st), min_m, '+inf', 'LIMIT', 0, limit)
end
local out = {}
for n, m in ipairs(ms) do
  if n > limit then break end
  local r = record(m, st)
  if r then
    out[#out + 1] = m
    out[#out + 1] = r
  end
end
return out
