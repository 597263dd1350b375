-- retry: puts a failed or cancelled job back to ready with a fresh count of attempts.
-- ARGV: member. Returns {0} not found, {1} retried, {2, state} not retryable,
-- {3, job ref} unique key held by another live job.
local m = ARGV[1]
local s = redis.call('HGET', K_SPEC, m)
if not s then return { 0 } end
local _, started, t = run_fields(redis.call('HGET', K_RUN, m))
local st = state_of(m, t)
if not st then return { 0 } end
if st ~= 'failed' and st ~= 'cancelled' then return { 2, st } end
local pr, _, _, u = spec_fields(s)
if u then
  local h = unique_holder(u)
  if h and h ~= jk(m) then return { 3, h } end
  redis.call('HSET', K_UNIQ, u, jk(m))
end
redis.call('ZREM', kt(st), m)
redis.call('ZREM', ks(st), m)
col_set(K_RUN, m, '0,' .. started .. ',')
redis.call('HDEL', K_FIN, m)
redis.call('ZADD', K_READY, string.format('%d', -pr), m)
redis.call('SADD', K_AGAIN, m)
wake(1)
return { 1 }
