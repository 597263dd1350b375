-- flows: the queue's flow limits and hold, and where it stands against them. ARGV: now.
-- Returns false without limits or a hold in force, else { concurrency | false, rate max |
-- false, rate window ms | false, running jobs, starts in the rate window (now - per, now],
-- when the rate limit lets the next job start if it is full | false, group concurrency |
-- false, the end of the hold in force | false, groups running, groups that may start no job
-- now, group rate max | false, group rate window ms | false, ready jobs of the groups that
-- may start no job now }.
local lim = redis.call('HMGET', K_LIM, 'c', 'rm', 'rp', 'g', 'h', 'gm', 'gp')
local now = tonumber(ARGV[1])
local hold = lim[5]
if hold and tonumber(hold) <= now then hold = false end
if not (lim[1] or lim[2] or lim[4] or lim[6] or hold) then return false end
local n, nx = 0, false
if lim[2] then
  local from = string.format('%d', now - tonumber(lim[3]))
  n = redis.call('ZCOUNT', K_STARTS, '(' .. from, '+inf')
  if n >= tonumber(lim[2]) then nx = rate_opens(lim, now) end
end
-- One field per group with a running job: at most as many as running jobs.
local runs = redis.call('HGETALL', K_GRUN)
local at_limit = 0
local full = {}
if lim[4] then
  local cap = tonumber(lim[4])
  for i = 1, #runs, 2 do
    if tonumber(runs[i + 1]) >= cap then
      at_limit = at_limit + 1
      full[runs[i]] = true
    end
  end
end
-- The groups with a full rate window (whether they have ready jobs or not): one entry each.
if lim[6] then
  local f = redis.call('ZRANGEBYSCORE', K_GFULL, '(' .. ARGV[1], '+inf')
  for _, g in ipairs(f) do
    if not full[g] then
      at_limit = at_limit + 1
      full[g] = true
    end
  end
end
-- Their ready jobs, held back whatever room the queue has: one ZCARD per group at its limit.
local held = 0
for g in pairs(full) do held = held + redis.call('ZCARD', kg(g)) end
return { lim[1], lim[2], lim[3], running_count(), n, nx, lim[4], hold, #runs / 2, at_limit,
  lim[6], lim[7], held }
