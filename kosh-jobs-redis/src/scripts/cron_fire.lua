-- cron_fire: fires schedules of one queue or (single server only) of several: each only if it
-- exists, is not paused, and is at the revision and cursor its fire was planned from; then
-- pushes its ticks' jobs as push does (unless it skips while its last job is live), moves
-- its cursor and counts its runs, all in this one script.
-- KEYS: as push: the first queue's base, the unique-key hash, the global id counter (single
--       server only), then the other queues' bases (single server only).
-- ARGV: now, origin, fires, then per fire: queue number (1 = KEYS[1], q > 1 = KEYS[q + 2]),
--       id, revision, cursor, next fire ('' = none), skip if live ('1' or '0'), first
--       sequence number ('' = take them from KEYS[3]), the last tick ('' = no tick), ticks,
--       then per tick its job in push's grouped form: spec, ready score, run_at, unique key,
--       group ('' = none).
-- Returns per fire: { 0 } stale, { 2 } overlapping (cursor moved, nothing pushed), or fired:
-- { 1 } without ticks, else { 1, first sequence number, then per tick whose unique key was
-- held: its place (from 1), the holder's job ref }.
local now = tonumber(ARGV[1])
local origin = ARGV[2]
local res = {}
local a = 4
for f = 1, tonumber(ARGV[3]) do
  local qn, id, rev, cursor = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local nx, skip, first, last_at = ARGV[a + 4], ARGV[a + 5] == '1', ARGV[a + 6], ARGV[a + 7]
  local k_s = ARGV[a + 8]
  local k = tonumber(k_s)
  local jobs_at = a + 9
  a = jobs_at + 5 * k
  local b = KEYS[1]
  if qn > 1 then b = KEYS[qn + 2] end
  local r = cron_read(redis.call('HGET', b .. ':cron', id))
  if not r or r.paused or r.rev ~= rev or r.next ~= cursor then
    res[f] = { 0 }
  elseif skip and k > 0 and r.lj ~= '' and ref_live(r.lj) then
    r.next = nx
    cron_write(b, id, r)
    res[f] = { 2 }
  else
    local out = { 1 }
    if k > 0 then
      local base
      if first == '' then
        base = redis.call('INCRBY', KEYS[3], k_s) - k
      else
        base = tonumber(first) - 1
      end
      out[2] = base + 1
      push_jobs({ b }, k, base, true, true, jobs_at, now, origin, out)
      -- The last tick's job: its holder when its unique key was held, else the new job.
      if #out >= 4 and out[#out - 1] == k then
        r.lj = out[#out]
      else
        r.lj = b .. ':j:' .. string.format('%016d', base + k)
      end
      r.lf = last_at
      r.runs = string.format('%d', tonumber(r.runs) + k)
    end
    r.next = nx
    cron_write(b, id, r)
    res[f] = out
  end
end
return res
