-- release: gives current leases back, attempt not counted.
-- ARGV: now, then leases ('<member>:<token>'). Returns how many were released.
local now = tonumber(ARGV[1])
local ls = {}
for i = 2, #ARGV do ls[i - 1] = ARGV[i] end
local current = zmscore_all(K_LEASE, ls)
allow_writes()
local rd, done, used = {}, {}, {}
for n, l in ipairs(ls) do
  if current[n] and not used[l] then
    used[l] = true
    done[#done + 1] = l
    local m = lease_job(l)
    local s = redis.call('HGET', K_SPEC, m)
    -- A job without its spec is gone (evicted): only its lease is dropped.
    if s then
      local t = string.sub(l, 18)
      local r, implied = run_of(m, t)
      if implied then keep_run(m, r, t) end
      local a, started = run_fields(r)
      archive(m, r, 'x', now)
      a = a - 1
      if a < 0 then a = 0 end
      col_set(K_RUN, m, a .. ',' .. started .. ',')
      rd[#rd + 1] = -spec_fields(s)
      rd[#rd + 1] = m
    end
  end
end
zrem_all(K_LEASE, done)
if group_running() then
  local ms = {}
  for k, l in ipairs(done) do ms[k] = lease_job(l) end
  unrun(ms)
end
make_ready(rd)
ran_again(rd)
wake(#rd / 2)
return #done
