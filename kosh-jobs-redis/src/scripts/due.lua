-- due: when something in this queue may next become ready by itself (see next_due). ARGV: now.
-- A queue with limits and ready jobs also answers for those: due now if the limits let one
-- start, when the rate window opens if only the rate limit holds them back, and not at all
-- while the concurrency limit, or every group with ready jobs, is full (a job leaving
-- `running` wakes the waiters). A held queue is due when its hold ends, if anything is ready
-- or becomes due before.
local lim = redis.call('HMGET', K_LIM, 'c', 'rm', 'rp', 'g', 'h')
if not (lim[1] or lim[2] or lim[4] or lim[5]) then return next_due(nil) end
local now = tonumber(ARGV[1])
local ungrouped = redis.call('ZCARD', K_READY) > 0
local grouped = redis.call('EXISTS', K_GTURNS) == 1
if lim[5] and tonumber(lim[5]) > now then
  if ungrouped or grouped then return lim[5] end
  local d = next_due(nil)
  if d and tonumber(d) < tonumber(lim[5]) then return lim[5] end
  return d
end
-- Whether a group may start a job now: the turns in order, past the groups at their limit
-- (at most as many as running jobs) and those kept without ready jobs (dropped by reserve).
-- Past 100 it answers yes: the reserve that follows settles it, and tells the waiter.
local function group_may_start(cap)
  if not cap then return redis.call('ZCARD', K_GALL) > 0 end
  local turns = redis.call('ZRANGE', K_GTURNS, '0', '99')
  for _, g in ipairs(turns) do
    if (tonumber(redis.call('HGET', K_GRUN, g)) or 0) < cap
      and redis.call('ZCARD', kg(g)) > 0 then
      return true
    end
  end
  return #turns == 100
end
local held = nil
if (lim[1] or lim[2] or lim[4]) and (ungrouped or grouped) then
  local rc, rr = flow_room(lim, now)
  if rc == 0 then
    held = nil
  elseif rr == 0 then
    held = rate_opens(lim, now) or nil
  elseif ungrouped or group_may_start(tonumber(lim[4])) then
    held = ARGV[1]
  end
end
return next_due(held)
