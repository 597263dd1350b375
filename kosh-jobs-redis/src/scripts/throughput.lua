-- throughput: the queue's completed and failed jobs per minute, from a minute on.
-- ARGV: since (a minute start, ms). Returns minute, completed, failed per minute, in order.
local ms = redis.call('ZRANGEBYSCORE', K_TPM, ARGV[1], '+inf')
local out = {}
if #ms == 0 then return out end
local f = {}
for _, m in ipairs(ms) do
  f[#f + 1] = 'c' .. m
  f[#f + 1] = 'f' .. m
end
local v = hmget_all(K_TP, f)
for i, m in ipairs(ms) do
  out[#out + 1] = m
  out[#out + 1] = v[2 * i - 1] or '0'
  out[#out + 1] = v[2 * i] or '0'
end
return out
