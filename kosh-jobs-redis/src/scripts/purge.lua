-- purge: deletes jobs in the given final states finished before a time.
-- ARGV: before (exclusive), limit, states... Returns how many (at most limit per state).
local before = ARGV[1]
local limit = tonumber(ARGV[2])
local total = 0
for i = 3, #ARGV do
  local st = ARGV[i]
  local victims = redis.call('ZRANGEBYSCORE', kt(st), '-inf', '(' .. before, 'LIMIT', 0, limit)
  if #victims > 0 then
    delete_jobs(st, victims)
    total = total + #victims
  end
end
return total
