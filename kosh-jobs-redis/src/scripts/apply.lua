-- apply: an operator's action on jobs of this queue, each atomically.
-- ARGV: action (retry, cancel, delete or promote), now, only (the states the action is
--       limited to, comma-separated; '' for every state it applies to), how many due
--       scheduled jobs to make ready first ('0' for a call's later steps: its first did),
--       then members.
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
if ARGV[4] ~= '0' then promote(now_s, ARGV[4]) end

-- Retry, the bulk action of an incident (hundreds of thousands of failed jobs), in one batch
-- (retry_found, retry_flush): each column and index is read and written once for all the
-- jobs, not once per job.
if action == 'retry' then
  local ms = {}
  for i = 5, #ARGV do ms[#ms + 1] = ARGV[i] end
  local specs, runs = hmget_all(K_SPEC, ms), hmget_all(K_RUN, ms)
  local in_failed, in_cancelled = zmscore_all(ks('failed'), ms), zmscore_all(ks('cancelled'), ms)
  local out, seen, batch = {}, {}, retry_batch()
  for i, m in ipairs(ms) do
    local s, r = specs[i], nil
    if not s then
      r = { 0 }
    else
      local _, started, t = run_fields(runs[i])
      local st
      if seen[m] then
        st = 'ready' -- retried earlier in this call
      elseif in_failed[i] then
        st = 'failed'
      elseif in_cancelled[i] then
        st = 'cancelled'
      else
        st = state_of(m, t)
      end
      if not st then
        r = { 0 }
      elseif not applies[st] or (only and not only[st]) then
        r = { 2, st }
      else
        r = retry_found(batch, m, s, started, st, now_s)
        if r[1] == 1 then seen[m] = true end
      end
    end
    out[i] = r
  end
  wake(retry_flush(batch))
  return out
end

local out = {}
-- Jobs made ready (promoted): one wake-up for all of them at the end.
local promoted = 0
for i = 5, #ARGV do
  local m = ARGV[i]
  local r
  local spec = redis.call('HGET', K_SPEC, m)
  if not spec then
    r = { 0 }
  else
    local _, _, t = run_fields(redis.call('HGET', K_RUN, m))
    local st = state_of(m, t)
    if not st then
      r = { 0 }
    elseif not applies[st] or (only and not only[st]) then
      r = { 2, st }
    elseif action == 'cancel' then
      r = cancel_job(m, now_s)
    elseif action == 'delete' then
      local _, _, _, u = spec_fields(spec)
      release_unique(u, m)
      delete_jobs(st, { m })
      r = { 1 }
    else
      local pr = spec_fields(spec)
      redis.call('ZREM', K_SCHED, m)
      redis.call('ZREM', ks('scheduled'), m)
      col_set(K_RA, m, now_s)
      make_ready({ string.format('%d', -pr), m })
      promoted = promoted + 1
      r = { 1 }
    end
  end
  out[#out + 1] = r
end
wake(promoted)
return out
