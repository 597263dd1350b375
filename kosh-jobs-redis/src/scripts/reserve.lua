-- reserve: leases up to `max` jobs of one queue.
-- ARGV: now, max, lease_ms
-- Returns { next_due | false, then per job: member, token, name, payload, priority, attempt,
--           max_attempts, created_at, progress | false, lease_deadline }
local now_s = ARGV[1]
local now = tonumber(now_s)
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
if redis.call('EXISTS', K_PAUSED) == 1 then
  redis.call('DEL', K_WAKE)
  return { next_due() }
end
recover(now, now_s, 1000)
promote(now, 1000)
local popped = redis.call('ZPOPMIN', K_READY, max)
local out = { false }
local leases, taken, idx = {}, {}, {}
local le = now + lease
-- Lease tokens come from a per-queue counter: unique among the queue's leases.
local tok = 0
if #popped > 0 then tok = redis.call('INCRBY', B .. ':tok', #popped / 2) - #popped / 2 end
for i = 1, #popped, 2 do
  local m = popped[i]
  local k = jk(m)
  local f = redis.call('HMGET', k, 'n', 'p', 'pr', 'a', 'ma', 'c', 'pg')
  taken[#taken + 1] = m
  tok = tok + 1
  if f[1] then
    local a = tonumber(f[4]) + 1
    local t = tok
    redis.call('HSET', k, 'st', 'running', 'a', a, 't', t, 's', now_s, 'le', le)
    leases[#leases + 1] = le
    leases[#leases + 1] = m
    idx[#idx + 1] = m
    idx[#idx + 1] = m
    out[#out + 1] = m
    out[#out + 1] = t
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
    out[#out + 1] = a
    out[#out + 1] = f[5]
    out[#out + 1] = f[6]
    out[#out + 1] = f[7]
    out[#out + 1] = le
  end
end
zrem_all(ks('ready'), taken)
zadd_all(K_LEASE, leases)
zadd_all(ks('running'), idx)
if #popped / 2 < max or redis.call('ZCARD', K_READY) == 0 then
  -- Nothing left to take: stale wake-up tokens would only cause empty reserves.
  redis.call('DEL', K_WAKE)
end
out[1] = next_due()
return out
