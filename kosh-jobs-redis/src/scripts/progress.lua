-- progress: stores a running job's progress. ARGV: member, token, JSON. Returns 1 or 0.
local k = jk(ARGV[1])
local f = redis.call('HMGET', k, 'st', 't')
if f[1] == 'running' and f[2] == ARGV[2] then
  redis.call('HSET', k, 'pg', ARGV[3])
  return 1
end
return 0
