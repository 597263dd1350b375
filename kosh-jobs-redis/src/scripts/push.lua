-- push: stores a batch of jobs, of one queue or (single server only) of several.
-- KEYS: the first queue's base, the unique-key hash, the global id counter (single server
--       only), then the bases of the other queues of the batch (single server only).
-- ARGV: now, origin, first sequence number ('' = take them from KEYS[3]), count, queues,
--       form ('p' = plain: every job ready now, without a unique key or group; 'u' = plain,
--       one queue, every job of one ready score, which comes next, once; 'f' = full;
--       'g' = full with groups), then per job: [queue number (1 = KEYS[1], q > 1 =
--       KEYS[q + 2]) when queues > 1,] spec, ready score (-priority; not in form 'u'), in
--       the full forms: run_at, unique ('' = none), and in the form with groups: group
--       ('' = none).
-- Job i (from 1) gets sequence number first + i - 1 unless its unique key is held.
-- Returns { first sequence number, then per job whose key was held: i, the holder's job ref }.
local n = tonumber(ARGV[4])
local base
if ARGV[3] == '' then
  base = redis.call('INCRBY', KEYS[3], ARGV[4]) - n
else
  base = tonumber(ARGV[3]) - 1
end
local bases = { KEYS[1] }
for q = 2, tonumber(ARGV[5]) do bases[q] = KEYS[q + 2] end
local out = { base + 1 }
local form = ARGV[6]
-- Numbers taken here follow every job already pushed: the plain forms append to the lists.
local lists = ARGV[3] == ''
if form == 'u' then
  push_jobs(bases, n, base, false, false, 8, tonumber(ARGV[1]), ARGV[2], out, ARGV[7], lists)
else
  push_jobs(bases, n, base, form ~= 'p', form == 'g', 7, tonumber(ARGV[1]), ARGV[2], out, nil,
    lists)
end
return out
