-- release: gives current leases back, attempt not counted.
-- ARGV: then per lease: member, token. Returns how many were released.
local rd, rdi, done = {}, {}, {}
for i = 1, #ARGV, 2 do
  local m = ARGV[i]
  local k = jk(m)
  local f = redis.call('HMGET', k, 'st', 't', 'a', 'pr')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    local a = tonumber(f[3]) - 1
    if a < 0 then a = 0 end
    redis.call('HSET', k, 'st', 'ready', 'a', a)
    done[#done + 1] = m
    rd[#rd + 1] = -tonumber(f[4])
    rd[#rd + 1] = m
    rdi[#rdi + 1] = m
    rdi[#rdi + 1] = m
  end
end
zrem_all(K_LEASE, done)
zrem_all(ks('running'), done)
zadd_all(K_READY, rd)
zadd_all(ks('ready'), rdi)
wake(#done)
return #done
