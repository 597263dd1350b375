-- list: jobs of one state from a member on, by member (= id order within the queue).
-- ARGV: state, min member (inclusive), limit. Returns member, {record fields} per job.
local st, min_m, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ms = walk(st, min_m, true, limit)
local sts = {}
for i = 1, #ms do sts[i] = st end
local recs = records(ms, sts)
local out = {}
for i, m in ipairs(ms) do
  if recs[i] then
    out[#out + 1] = m
    out[#out + 1] = recs[i]
  end
end
return out
