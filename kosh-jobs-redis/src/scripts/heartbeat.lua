-- heartbeat: extends current leases.
-- ARGV: now, extend_ms, then per lease: member, token. Returns 1 (extended) or 0 (lost) each.
local le = tonumber(ARGV[1]) + tonumber(ARGV[2])
local out, leases = {}, {}
for i = 3, #ARGV, 2 do
  local m = ARGV[i]
  local k = jk(m)
  local f = redis.call('HMGET', k, 'st', 't')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('HSET', k, 'le', le)
    leases[#leases + 1] = le
    leases[#leases + 1] = m
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
zadd_all(K_LEASE, leases)
return out
