-- cron_due: this queue's unpaused schedules whose cursor is at or before ARGV[1], earliest
-- first (ties by id), up to ARGV[2].
-- KEYS: the queue's base.
-- Returns { id, record, ... }.
local ids = redis.call('ZRANGEBYSCORE', B .. ':crondue', '-inf', ARGV[1], 'LIMIT', '0', ARGV[2])
local recs = hmget_all(B .. ':cron', ids)
local out = {}
for i, id in ipairs(ids) do
  if recs[i] then
    out[#out + 1] = id
    out[#out + 1] = recs[i]
  end
end
return out
