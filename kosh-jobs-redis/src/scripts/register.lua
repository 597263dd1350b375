-- register: the index of a queue (1..65535), assigning the next one on first use.
-- KEYS: {prefix}:queues (name -> index), {prefix}:qnames (index -> name). ARGV: name.
local i = redis.call('HGET', KEYS[1], ARGV[1])
if i then return tonumber(i) end
local n = redis.call('HLEN', KEYS[1]) + 1
if n > 65535 then return redis.error_reply('ERR kosh-jobs: more than 65535 queues under one prefix') end
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('HSET', KEYS[2], n, ARGV[1])
return n
