-- due: when something in this queue may next become ready by itself (see next_due). ARGV: now.
-- A queue with limits and ready jobs also answers for those: due now if the limits let one
-- start, when the rate window opens if only the rate limit holds them back, when the first
-- group window opens if only group rate windows (and full groups) hold them back, and not at
-- all while the concurrency limit, or every group with ready jobs, is full (a job leaving
-- `running` wakes the waiters). A held queue is due when its hold ends, if anything is ready
-- or becomes due before.
local lim = redis.call('HMGET', K_LIM, 'c', 'rm', 'rp', 'g', 'h', 'gm', 'gp')
if not (lim[1] or lim[2] or lim[4] or lim[5] or lim[6]) then return next_due(nil) end
local now = tonumber(ARGV[1])
local gr = group_rate(lim)
local ungrouped = ready_any()
local grouped = redis.call('EXISTS', K_GTURNS) == 1
local parked = gr ~= nil and redis.call('EXISTS', K_GPARK) == 1
if lim[5] and tonumber(lim[5]) > now then
  if ungrouped or grouped or parked then return lim[5] end
  local d = next_due(nil)
  if d and tonumber(d) < tonumber(lim[5]) then return lim[5] end
  return d
end
-- Whether a group taking turns may start a job now, else when the first of them held back by
-- its rate window may (nil: none): the turns in order, past the groups at their limit (at
-- most as many as running jobs), those with a full window (not parked yet: a reserve parks
-- them) and those kept without ready jobs (dropped by reserve). Past 100 it answers yes: the
-- reserve that follows settles it, and tells the waiter.
local function group_may_start(cap)
  if not cap and not gr then return redis.call('ZCARD', K_GALL) > 0, nil end
  local turns = redis.call('ZRANGE', K_GTURNS, '0', '99')
  local first = nil
  for _, g in ipairs(turns) do
    if (not cap or (tonumber(redis.call('HGET', K_GRUN, g)) or 0) < cap)
      and redis.call('ZCARD', kg(g)) > 0 then
      local opens = gr and group_opens(g, gr, 0, now)
      if not opens then return true, nil end
      if not first or opens < first then first = opens end
    end
  end
  return #turns == 100, first
end
local held = nil
if (lim[1] or lim[2] or lim[4] or gr) and (ungrouped or grouped or parked) then
  local rc, rr = flow_room(lim, now)
  if rc == 0 then
    held = nil
  elseif rr == 0 then
    held = rate_opens(lim, now) or nil
  elseif ungrouped then
    held = ARGV[1]
  else
    local cap = tonumber(lim[4])
    local yes, first = false, nil
    if grouped then yes, first = group_may_start(cap) end
    if yes then
      held = ARGV[1]
    else
      local p = parked and parked_opens(cap, now)
      if p and (not first or tonumber(p) < first) then first = tonumber(p) end
      if first then held = string.format('%d', first) end
    end
  end
end
return next_due(held)
