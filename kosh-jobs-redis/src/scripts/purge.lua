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
-- Completed jobs are indexed by id only (kept lean for throughput): scan and check.
local from = '-inf'
if cursor ~= '' then from = '(' .. cursor end
local scan = done_members(redis.call('ZRANGEBYSCORE', ks(st), from, '+inf', 'LIMIT', 0, limit))
-- Their finish times are in their entries, or (an older layout's) in K_FIN.
local victims, olds = {}, {}
for _, m in ipairs(scan) do
  local f = DONE_AT[m]
  local old = not f
  if old then f = redis.call('HGET', K_FIN, m) end
  if not f or tonumber(f) < before then
    victims[#victims + 1] = m
    if old then olds[#olds + 1] = m end
  end
end
if #victims > 0 then delete_jobs(st, victims, false, olds) end
if #scan == limit then return { #victims, scan[#scan] } end
return { #victims, false }
