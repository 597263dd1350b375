-- running: the queue's running jobs and the worker of each one's current attempt.
-- Returns member, worker id ('' when unknown) per running job.
local ls = redis.call('ZRANGE', K_LEASE, 0, -1)
local ms, ts = {}, {}
for _, l in ipairs(ls) do
  if l ~= SENT then
    ms[#ms + 1] = lease_job(l)
    ts[#ts + 1] = string.sub(l, 18)
  end
end
local out = {}
if #ms == 0 then return out end
local runs = hmget_all(K_RUN, ms)
local ws, seen, wl = {}, {}, {}
for i = 1, #ms do
  -- A first attempt without a `run` entry: the one its lease implies (see K_RC).
  local _, _, _, w = run_fields(runs[i] or implied_run(ts[i]))
  ws[i] = w
  if w ~= '' and not seen[w] then
    seen[w] = true
    wl[#wl + 1] = w
  end
end
local names = {}
if #wl > 0 then
  local got = hmget_all(K_WID, wl)
  for k, w in ipairs(wl) do names[w] = got[k] end
end
for i, m in ipairs(ms) do
  out[#out + 1] = m
  out[#out + 1] = names[ws[i]] or ''
end
return out
