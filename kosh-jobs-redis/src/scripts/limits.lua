-- limits: sets the queue's flow limits, replacing its previous ones (a hold stays), and wakes
-- its waiters (a raised limit may let held-back jobs start).
-- ARGV: concurrency, rate max, rate window in ms, group concurrency, group rate max, group
-- rate window in ms ('' for a limit not set; none set removes the limits), now. Returns 1
-- when the queue has limits now, else 0.
local c, rm, rp, g, gm, gp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = tonumber(ARGV[7])
if rm == '' then
  -- No rate limit, no log: a rate set later starts with an empty one.
  redis.call('DEL', K_STARTS)
else
  -- Only the last rm starts can matter.
  redis.call('ZREMRANGEBYRANK', K_STARTS, '0', string.format('%d', -tonumber(rm) - 1))
end
local old = redis.call('HMGET', K_LIM, 'h', 'gm', 'gp')
local hold = old[1]
-- The group rate's keys. A changed group rate gives every parked group its turn back (a
-- reserve parks again those still full) and finds the full windows anew from the logs (one
-- read per group with a start in the last window); no group rate, no logs. Parked groups are
-- also given back when a version without group rates dropped the rate (see the README).
if gm ~= (old[2] or '') or gp ~= (old[3] or '') or gm == '' then
  unpark(redis.call('ZRANGE', K_GPARK, '0', '-1'))
  local logged = redis.call('ZRANGE', K_GLOGS, '0', '-1', 'WITHSCORES')
  redis.call('DEL', K_GFULL)
  local gone, keys = {}, {}
  local gr = nil
  if gm ~= '' then gr = { tonumber(gm), tonumber(gp) } end
  for i = 1, #logged, 2 do
    local grp = logged[i]
    if not gr or tonumber(logged[i + 1]) <= now - gr[2] then
      gone[#gone + 1] = grp
      keys[#keys + 1] = kgl(grp)
    else
      local opens = group_opens(grp, gr, 0, now)
      if opens then redis.call('ZADD', K_GFULL, string.format('%d', opens), grp) end
    end
  end
  for i = 1, #keys, CHUNK do redis.call('DEL', unpack(keys, i, math.min(i + CHUNK - 1, #keys))) end
  zrem_all(K_GLOGS, gone)
end
redis.call('DEL', K_LIM)
local f = {}
if c ~= '' then
  f[#f + 1] = 'c'
  f[#f + 1] = c
end
if rm ~= '' then
  f[#f + 1] = 'rm'
  f[#f + 1] = rm
  f[#f + 1] = 'rp'
  f[#f + 1] = rp
end
if g ~= '' then
  f[#f + 1] = 'g'
  f[#f + 1] = g
end
if gm ~= '' then
  f[#f + 1] = 'gm'
  f[#f + 1] = gm
  f[#f + 1] = 'gp'
  f[#f + 1] = gp
end
local set = 0
if #f > 0 then set = 1 end
if hold then
  f[#f + 1] = 'h'
  f[#f + 1] = hold
end
if #f > 0 then redis.call('HSET', K_LIM, unpack(f)) end
wake(ready_count() + redis.call('ZCARD', K_GALL))
return set
