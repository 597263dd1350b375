-- retry: puts a failed or cancelled job back to ready with a fresh count of attempts.
-- ARGV: member. Returns {0} not found, {1} retried, {2, state} not retryable,
-- {3, job key} unique key held by another live job.
local m = ARGV[1]
local k = jk(m)
local f = redis.call('HMGET', k, 'st', 'u', 'pr')
local st = f[1]
if not st then return { 0 } end
if st ~= 'failed' and st ~= 'cancelled' then return { 2, st } end
if f[2] then
  local h = unique_holder(f[2])
  if h and h ~= k then return { 3, h } end
  redis.call('HSET', K_UNIQ, f[2], k)
end
redis.call('ZREM', kt(st), m)
redis.call('ZREM', ks(st), m)
redis.call('HSET', k, 'st', 'ready', 'a', 0)
redis.call('HDEL', k, 'f')
redis.call('ZADD', K_READY, -tonumber(f[3]), m)
wake(1)
return { 1 }
