-- cron_upsert: creates or replaces schedule ARGV[1] in this queue (its record: see cron_read).
-- KEYS: the queue's base.
-- ARGV: id, definition JSON, next fire ('' = none), mode, then by mode:
--   'n' (created, or replaced in its queue): nothing more;
--   'm' (moved here from another queue): the old record's revision, paused, last fire, runs,
--       last job ref (kept, the revision bumped past both records');
--   'c' (a move's catch-up: the old record changed while it moved): the revision 'm' wrote,
--       then paused, last fire, runs, last job ref as the old record ended.
-- Returns { 1 created | 2 replaced | 3 unchanged | 0 (mode 'c': the revision has moved on),
-- the revision }. A created or replaced schedule wakes one waiter of the queue.
local id, def, nx, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local r = cron_read(redis.call('HGET', B .. ':cron', id))
if mode == 'c' then
  if not r or r.rev ~= ARGV[5] then return { 0, '' } end
  r.paused, r.lf, r.runs, r.lj = ARGV[6] == '1', ARGV[7], ARGV[8], ARGV[9]
  cron_write(B, id, r)
  return { 2, r.rev }
end
if r and r.def == def then return { 3, r.rev } end
local outcome = 2
if mode == 'm' then
  local rev = tonumber(ARGV[5])
  if r and tonumber(r.rev) > rev then rev = tonumber(r.rev) end
  r = { rev = string.format('%d', rev + 1), paused = ARGV[6] == '1', lf = ARGV[7],
    runs = ARGV[8], lj = ARGV[9] }
elseif r then
  r.rev = string.format('%d', tonumber(r.rev) + 1)
else
  outcome = 1
  r = { rev = '1', paused = false, lf = '', runs = '0', lj = '' }
end
r.next, r.def = nx, def
cron_write(B, id, r)
-- A waiter of this queue wakes and has its worker read the schedules again: a worker reads
-- them seldom when idle (kosh_jobs_core::backend::Pacing), and must not miss this one's ticks.
wake(1)
return { outcome, r.rev }
