-- apply: an operator's action on jobs of this queue, each atomically.
-- ARGV: action (retry, cancel, delete or promote), now, only (the states the action is
--       limited to, comma-separated; '' for every state it applies to), then members.
-- Returns per member: {0} not found, {1} applied, {2, state} skipped, {3, job ref} unique
-- key held by another live job (retry).
local action, now_s = ARGV[1], ARGV[2]
local only = nil
if ARGV[3] ~= '' then
  only = {}
  for st in string.gmatch(ARGV[3], '[^,]+') do only[st] = true end
end
local APPLIES = {
  retry = { failed = true, cancelled = true },
  cancel = { scheduled = true, ready = true, running = true },
  delete = { completed = true, failed = true, cancelled = true },
  promote = { scheduled = true },
}
local applies = APPLIES[action]
if not applies then return redis.error_reply('ERR kosh-jobs: unknown action ' .. action) end
-- Due scheduled jobs are ready, as reserve would make them.
promote(now_s, '1000')
local out = {}
local promoted = 0
for i = 4, #ARGV do
  local m = ARGV[i]
  local r
  if redis.call('HEXISTS', K_SPEC, m) == 0 then
    r = { 0 }
  else
    local _, _, t = run_fields(redis.call('HGET', K_RUN, m))
    local st = state_of(m, t)
    if not st then
      r = { 0 }
    elseif not applies[st] or (only and not only[st]) then
      r = { 2, st }
    elseif action == 'retry' then
      r = retry_job(m, now_s)
    elseif action == 'cancel' then
      r = cancel_job(m, now_s)
    elseif action == 'delete' then
      local s = redis.call('HGET', K_SPEC, m)
      local _, _, _, u = spec_fields(s)
      release_unique(u, m)
      delete_jobs(st, { m })
      r = { 1 }
    else
      local pr = spec_fields(redis.call('HGET', K_SPEC, m))
      redis.call('ZREM', K_SCHED, m)
      redis.call('ZREM', ks('scheduled'), m)
      col_set(K_RA, m, now_s)
      redis.call('ZADD', K_READY, string.format('%d', -pr), m)
      promoted = promoted + 1
      r = { 1 }
    end
  end
  out[#out + 1] = r
end
wake(promoted)
return out
