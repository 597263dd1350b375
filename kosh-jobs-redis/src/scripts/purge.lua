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
-- Their finish times are in DONE_AT (done_members); those of an older layout's entries have
-- a K_FIN entry to delete too.
local scan, olds = done_members(redis.call('ZRANGEBYSCORE', ks(st), from, '+inf', 'LIMIT', 0, limit))
local victims = {}
for _, m in ipairs(scan) do
  local f = DONE_AT[m]
  if not f or tonumber(f) < before then victims[#victims + 1] = m end
end
if #victims > 0 then delete_jobs(st, victims, false, with_fin(victims, olds)) end
if #scan == limit then return { #victims, scan[#scan] } end
return { #victims, false }
