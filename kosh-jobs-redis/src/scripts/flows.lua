-- flows: the queue's flow limits and where it stands against them. ARGV: now.
-- Returns false without limits, else { concurrency | false, rate max | false, rate window ms
-- | false, running jobs, starts in the rate window (now - per, now], when the rate limit lets
-- the next job start if it is full | false }.
local lim = redis.call('HMGET', K_LIM, 'c', 'rm', 'rp')
if not (lim[1] or lim[2]) then return false end
local n, nx = 0, false
if lim[2] then
  local now = tonumber(ARGV[1])
  local from = string.format('%d', now - tonumber(lim[3]))
  n = redis.call('ZCOUNT', K_STARTS, '(' .. from, '+inf')
  if n >= tonumber(lim[2]) then nx = rate_opens(lim, now) end
end
return { lim[1], lim[2], lim[3], running_count(), n, nx }
