-- reserve: leases up to `max` jobs of one queue.
-- ARGV: now, max, lease_ms
-- Returns { next_due, lease_deadline, then per job: member, token, name, payload, priority,
--           attempt, max_attempts, created_at, progress | false }
-- next_due is a time, false (nothing pending), or 'x' (not computed: the queue may have more).
local now_s = ARGV[1]
local now = tonumber(now_s)
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
if redis.call('EXISTS', K_PAUSED) == 1 then
  -- Nothing is due for a paused queue (resuming wakes waiters): a due time here would make
  -- idle workers spin on it.
  redis.call('DEL', K_WAKE)
  return { false, false }
end
recover(now, now_s, 1000)
promote(now, 1000)
local popped = redis.call('ZPOPMIN', K_READY, max)
local n = #popped / 2
local out = { 'x', false }
if n > 0 then
  -- Tokens come from a per-queue counter: unique among the queue's leases.
  local base = redis.call('INCRBY', B .. ':tok', n) - n
  -- Numbers become strings once each (Lua formats them with sprintf on every use).
  local le = string.format('%d', now + lease)
  out[2] = le
  local leases = {}
  for i = 1, n do
    local m = popped[2 * i - 1]
    local k = jk(m)
    local f = redis.call('HMGET', k, 'n', 'p', 'pr', 'a', 'ma', 'c', 'pg', 'u')
    if f[1] then
      local a = tonumber(f[4]) + 1
      local t = (base + i) * 2
      if f[8] then t = t + 1 end
      t = string.format('%d', t)
      redis.call('HSET', k, 'st', 'running', 'a', a, 't', t, 's', now_s, 'le', le)
      leases[#leases + 1] = le
      leases[#leases + 1] = m .. ':' .. t
      out[#out + 1] = m
      out[#out + 1] = t
      out[#out + 1] = f[1]
      out[#out + 1] = f[2]
      out[#out + 1] = f[3]
      out[#out + 1] = a
      out[#out + 1] = f[5]
      out[#out + 1] = f[6]
      out[#out + 1] = f[7]
    end
  end
  zadd_all(K_LEASE, leases)
end
if n < max or redis.call('ZCARD', K_READY) == 0 then
  -- Nothing left to take: stale wake-up tokens would only cause empty reserves.
  redis.call('DEL', K_WAKE)
end
if n < max then
  -- The caller is about to wait: tell it until when.
  out[1] = next_due()
end
return out
