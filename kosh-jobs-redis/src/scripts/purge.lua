-- purge: deletes jobs of one final state that finished before a time, a chunk at a time.
-- ARGV: state, before (exclusive), limit, cursor ('' = from the start).
-- Returns { deleted, next cursor | false when done }.
local st, before, limit, cursor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if st ~= 'completed' then
  -- Failed and cancelled jobs are indexed by finish time.
  local victims = redis.call('ZRANGEBYSCORE', kt(st), '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
  if #victims > 0 then delete_jobs(st, victims) end
  if #victims == limit then return { #victims, '' } end
  return { #victims, false }
end
-- Completed jobs are kept in lists by the hundred ids (see `kdl`): each list is read whole
-- and written again without the jobs that finished before `before`. The cursor is the last
-- bucket read.
local from = '-inf'
if cursor ~= '' then from = '(' .. cursor end
local bs = redis.call('ZRANGEBYSCORE', K_CB, from, '+inf', 'LIMIT', '0', '64')
local examined, deleted, last = 0, 0, nil
local sub = string.sub
for _, b in ipairs(bs) do
  if examined >= limit then break end
  last = b
  local k = kdl(b)
  local es = redis.call('LRANGE', k, '0', '-1')
  examined = examined + #es
  local keep, victims = {}, {}
  for _, e in ipairs(es) do
    local f = tonumber((done_fields(e)))
    if not f or f < before then
      victims[#victims + 1] = b .. sub(e, 1, 2)
    else
      keep[#keep + 1] = e
    end
  end
  if #victims > 0 then
    redis.call('DEL', k)
    if #keep > 0 then redis.call('RPUSH', k, unpack(keep)) end
    delete_jobs(st, victims, true)
    deleted = deleted + #victims
  end
  if #keep == 0 then redis.call('ZREM', K_CB, b) end
end
if last and (last ~= bs[#bs] or #bs == 64) then return { deleted, last } end
return { deleted, false }
