-- migrate: moves up to ARGV[1] completed jobs of an older layout (3 to 8: the sorted set
-- `s:completed`, entries '<member>' with the time in `fin`, or '<member>:<finished_at>')
-- into the lists of layout 9 (see `kdl`), their `run` and `fin` entries into their list
-- entries. Returns how many it moved and how many are left.
local kc = ks('completed')
local es = redis.call('ZRANGE', kc, '0', string.format('%d', tonumber(ARGV[1]) - 1))
if #es == 0 then return { 0, 0 } end
local sub = string.sub
local ms, fins, olds = {}, {}, {}
for i, e in ipairs(es) do
  local m = sub(e, 1, 16)
  ms[i] = m
  if #e == 16 then
    olds[#olds + 1] = m
  else
    fins[m] = sub(e, 18)
  end
end
if #olds > 0 then
  local fs = hmget_all(K_FIN, olds)
  for i, m in ipairs(olds) do fins[m] = fs[i] or '' end
  hdel_all(K_FIN, olds)
end
local runs = hmget_all(K_RUN, ms)
hdel_all(K_RUN, ms)
local tails = {}
for i, m in ipairs(ms) do tails[i] = ',' .. fins[m] .. ',' .. (runs[i] or '') end
done_append(ms, {}, ms, tails, string.format('%d', #ms))
redis.call('ZREMRANGEBYRANK', kc, '0', string.format('%d', #es - 1))
return { #es, redis.call('ZCARD', kc) }
