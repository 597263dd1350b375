-- hold: no job of the queue starts before `until` (reserve leases none, waiters sleep until
-- then); a hold only lengthens. Kept as field h of the queue's limits.
-- ARGV: until (ms), origin. Returns 1 when the hold was set or lengthened, else 0.
local h = redis.call('HGET', K_LIM, 'h')
if h and tonumber(h) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', K_LIM, 'h', ARGV[1])
-- The wake-up tokens say jobs can start: none can now.
redis.call('DEL', K_WAKE)
-- A waiter re-reads its deadline: one of another process returns (its reserve then learns the
-- hold's end); this process's own waiters skip the token and re-read it.
wake(1, 's:' .. ARGV[2])
return 1
