-- worker: registers, refreshes or removes a running worker, or lists the live ones.
-- KEYS: {prefix}:workers (HASH id -> 'last_seen|info JSON'), {prefix}:wexp (ZSET id by the
--       time its registration ends). Both under `{prefix}`: one slot.
-- ARGV: 'set', now, until, id, info JSON | 'del', id | 'list', now.
-- Registrations that have ended are dropped by every call. 'list' returns id, value per
-- live worker.
local op = ARGV[1]
local K_W, K_X = KEYS[1], KEYS[2]
if op == 'del' then
  redis.call('HDEL', K_W, ARGV[2])
  redis.call('ZREM', K_X, ARGV[2])
  return 1
end
local now_s = ARGV[2]
local gone = redis.call('ZRANGEBYSCORE', K_X, '-inf', now_s, 'LIMIT', 0, 1000)
if #gone > 0 then
  hdel_all(K_W, gone)
  zrem_all(K_X, gone)
end
if op == 'set' then
  redis.call('HSET', K_W, ARGV[4], now_s .. '|' .. ARGV[5])
  redis.call('ZADD', K_X, ARGV[3], ARGV[4])
  return 1
end
local ids = redis.call('ZRANGEBYSCORE', K_X, '(' .. now_s, '+inf')
local out = {}
if #ids == 0 then return out end
local vals = hmget_all(K_W, ids)
for i, id in ipairs(ids) do
  if vals[i] then
    out[#out + 1] = id
    out[#out + 1] = vals[i]
  end
end
return out
