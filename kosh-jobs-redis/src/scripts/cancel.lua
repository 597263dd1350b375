-- cancel: ARGV: now, member. Returns {0} not found, {1} cancelled, {2, state} already final.
local now_s = ARGV[1]
local m = ARGV[2]
local k = jk(m)
local f = redis.call('HMGET', k, 'st', 'u', 't')
local st = f[1]
if not st then return { 0 } end
if not LIVE[st] then return { 2, st } end
if st == 'ready' then
  redis.call('ZREM', K_READY, m)
  if redis.call('ZCARD', K_READY) == 0 then redis.call('DEL', K_WAKE) end
elseif st == 'scheduled' then
  redis.call('ZREM', K_SCHED, m)
  redis.call('ZREM', ks('scheduled'), m)
else
  redis.call('ZREM', K_LEASE, m .. ':' .. f[3])
end
redis.call('HSET', k, 'st', 'cancelled', 'f', now_s)
release_unique(f[2], m)
redis.call('ZADD', kt('cancelled'), now_s, m)
redis.call('ZADD', ks('cancelled'), m, m)
return { 1 }
