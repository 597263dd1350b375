-- limits: sets the queue's flow limits, replacing its previous ones, and wakes its waiters (a
-- raised limit may let held-back jobs start).
-- ARGV: concurrency, rate max, rate window in ms ('' for a limit not set; none set removes
-- the limits). Returns 1 when the queue has limits now, else 0.
local c, rm, rp = ARGV[1], ARGV[2], ARGV[3]
if rm == '' then
  -- No rate limit, no log: a rate set later starts with an empty one.
  redis.call('DEL', K_STARTS)
else
  -- Only the last rm starts can matter.
  redis.call('ZREMRANGEBYRANK', K_STARTS, '0', string.format('%d', -tonumber(rm) - 1))
end
redis.call('DEL', K_LIM)
local set = 0
if c ~= '' or rm ~= '' then
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
  redis.call('HSET', K_LIM, unpack(f))
  set = 1
end
wake(redis.call('ZCARD', K_READY))
return set
