-- due: when something in this queue may next become ready by itself (see next_due). ARGV: now.
-- A queue with limits and ready jobs also answers for those: due now if the limits let one
-- start, when the rate window opens if only the rate limit holds them back, and not at all
-- while the concurrency limit is full (a job leaving `running` wakes the waiters).
local lim = redis.call('HMGET', K_LIM, 'c', 'rm', 'rp')
local held = nil
if (lim[1] or lim[2]) and redis.call('ZCARD', K_READY) > 0 then
  local now = tonumber(ARGV[1])
  local rc, rr = flow_room(lim, now)
  if rc == 0 then
    held = nil
  elseif rr == 0 then
    held = rate_opens(lim, now) or nil
  else
    held = ARGV[1]
  end
end
return next_due(held)
