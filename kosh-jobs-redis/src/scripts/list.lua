-- list: jobs of one state from a sequence number on, by sequence.
-- ARGV: state, min_seq (inclusive), limit. Returns member, {HGETALL fields} per job.
local ms = redis.call('ZRANGEBYSCORE', ks(ARGV[1]), ARGV[2], '+inf', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(ms) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGETALL', jk(m))
end
return out
