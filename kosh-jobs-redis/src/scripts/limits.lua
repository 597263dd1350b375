-- limits: sets the queue's flow limits, replacing its previous ones (a hold stays), and wakes
-- its waiters (a raised limit may let held-back jobs start).
-- ARGV: concurrency, rate max, rate window in ms, group concurrency ('' for a limit not set;
-- none set removes the limits). Returns 1 when the queue has limits now, else 0.
local c, rm, rp, g = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if rm == '' then
  -- No rate limit, no log: a rate set later starts with an empty one.
  redis.call('DEL', K_STARTS)
else
  -- Only the last rm starts can matter.
  redis.call('ZREMRANGEBYRANK', K_STARTS, '0', string.format('%d', -tonumber(rm) - 1))
end
local hold = redis.call('HGET', K_LIM, 'h')
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
local set = 0
if #f > 0 then set = 1 end
if hold then
  f[#f + 1] = 'h'
  f[#f + 1] = hold
end
if #f > 0 then redis.call('HSET', K_LIM, unpack(f)) end
wake(redis.call('ZCARD', K_READY) + redis.call('ZCARD', K_GALL))
return set
