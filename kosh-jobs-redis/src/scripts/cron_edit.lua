-- cron_edit: pauses, resumes, removes or takes schedule ARGV[2] of this queue.
-- KEYS: the queue's base.
-- ARGV: op ('pause', 'resume', 'remove' or 'take'), id, then for 'resume': the revision it was
--       read at, the new cursor ('' = none).
-- Returns for 'pause' 1 (paused) or 0 (no such schedule); 'remove' 1 (removed) or 0; 'take'
-- the removed record, or false; 'resume' 0 (no such schedule), 1 (resumed, or it was not
-- paused) or 2 (another revision).
local op, id = ARGV[1], ARGV[2]
local k = B .. ':cron'
local raw = redis.call('HGET', k, id)
if op == 'remove' or op == 'take' then
  if not raw then
    if op == 'take' then return false end
    return 0
  end
  redis.call('HDEL', k, id)
  redis.call('ZREM', B .. ':crondue', id)
  if op == 'take' then return raw end
  return 1
end
local r = cron_read(raw)
if not r then return 0 end
if op == 'pause' then
  if not r.paused then
    r.paused = true
    cron_write(B, id, r)
  end
  return 1
end
if r.rev ~= ARGV[3] then return 2 end
if r.paused then
  r.paused, r.next = false, ARGV[4]
  cron_write(B, id, r)
  -- As for a new schedule (cron_upsert): a waiter wakes, its worker reads the schedules.
  wake(1)
end
return 1
