-- release: gives current leases back, attempt not counted.
-- ARGV: leases ('<member>:<token>'). Returns how many were released.
local ls = {}
for i = 1, #ARGV do ls[i] = ARGV[i] end
local current = zmscore_all(K_LEASE, ls)
local rd, done, used = {}, {}, {}
for n, l in ipairs(ls) do
  if current[n] and not used[l] then
    used[l] = true
    local m = lease_job(l)
    local k = jk(m)
    local f = redis.call('HMGET', k, 'a', 'pr')
    local a = tonumber(f[1]) - 1
    if a < 0 then a = 0 end
    redis.call('HSET', k, 'st', 'ready', 'a', a)
    done[#done + 1] = l
    rd[#rd + 1] = -tonumber(f[2])
    rd[#rd + 1] = m
  end
end
zrem_all(K_LEASE, done)
zadd_all(K_READY, rd)
wake(#done)
return #done
