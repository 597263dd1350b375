-- cancel: ARGV: now, member. Returns {0} not found, {1} cancelled, {2, state} already final.
local now_s = ARGV[1]
local m = ARGV[2]
local s = redis.call('HGET', K_SPEC, m)
if not s then return { 0 } end
local _, _, t = run_fields(redis.call('HGET', K_RUN, m))
local st = state_of(m, t)
if not st then return { 0 } end
if st ~= 'ready' and st ~= 'scheduled' and st ~= 'running' then return { 2, st } end
if st == 'ready' then
  redis.call('ZREM', K_READY, m)
  if redis.call('ZCARD', K_READY) == 0 then redis.call('DEL', K_WAKE) end
elseif st == 'scheduled' then
  redis.call('ZREM', K_SCHED, m)
  redis.call('ZREM', ks('scheduled'), m)
else
  redis.call('ZREM', K_LEASE, m .. ':' .. t)
end
local _, _, _, u = spec_fields(s)
release_unique(u, m)
redis.call('SREM', K_AGAIN, m)
col_set(K_FIN, m, now_s)
redis.call('ZADD', kt('cancelled'), now_s, m)
redis.call('ZADD', ks('cancelled'), m, m)
return { 1 }
