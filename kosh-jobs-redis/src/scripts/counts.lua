-- counts: the number of jobs per state, whether the queue is paused, and when its
-- longest-waiting ready job became due (false when none). ARGV: now.
-- Scheduled jobs already due count as ready (reserve promotes them before leasing).
local now_s = ARGV[1]
local running = redis.call('ZCARD', K_LEASE)
if redis.call('ZSCORE', K_LEASE, SENT) then running = running - 1 end
local due = redis.call('ZCOUNT', K_SCHED, '-inf', now_s)
-- The head of each priority level of the ready sets (a level's jobs sort by member), at most
-- 64 levels each, of the jobs without a group and of those with one: the earliest run_at
-- among them.
local oldest = nil
local function seen(m)
  local ra = redis.call('HGET', K_RA, m)
  if not ra then
    local s = redis.call('HGET', K_SPEC, m)
    if s then
      local _pr, _ma
      _pr, _ma, ra = spec_fields(s)
    end
  end
  ra = tonumber(ra)
  if ra and (oldest == nil or ra < oldest) then oldest = ra end
end
for _, key in ipairs({ K_READY, K_GALL }) do
  local lo = '-inf'
  for _ = 1, 64 do
    local r = redis.call('ZRANGEBYSCORE', key, lo, '+inf', 'WITHSCORES', 'LIMIT', '0', '1')
    if #r == 0 then break end
    seen(r[1])
    lo = '(' .. r[2]
  end
end
-- And the head of each ready list (one per priority level, in member order).
for _, sc in ipairs(list_scores()) do
  local h = redis.call('LINDEX', K_RL .. sc, '0')
  if h then seen(h) end
end
if due > 0 then
  local r = redis.call('ZRANGE', K_SCHED, '0', '0', 'WITHSCORES')
  local at = tonumber(r[2])
  if at and (oldest == nil or at < oldest) then oldest = at end
end
local oldest_s = false
if oldest then oldest_s = string.format('%d', oldest) end
return {
  redis.call('ZCARD', K_SCHED) - due,
  ready_count() + redis.call('ZCARD', K_GALL) + due,
  running,
  done_count(),
  redis.call('ZCARD', ks('failed')),
  redis.call('ZCARD', ks('cancelled')),
  redis.call('EXISTS', K_PAUSED),
  oldest_s,
}
