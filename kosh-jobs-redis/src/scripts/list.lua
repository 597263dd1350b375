-- list: jobs of one state from a member on, by member (= id order within the queue).
-- ARGV: state, min member (inclusive), limit. Returns member, {record fields} per job.
local st, min_m, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ms = walk(st, min_m, true, limit)
local sts = {}
for i = 1, #ms do sts[i] = st end
return append_records({}, ms, sts)
