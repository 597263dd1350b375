-- finish: ends attempts whose lease is current.
-- ARGV: now, keep_age_ms (-1 = forever), keep_count (-1 = unlimited), origin, then per item:
--   lease ('<member>:<token>'), kind, and for kind c: result JSON ('' = none);
--   f: error; r: error, retry_at.
-- Returns one 1 (applied) or 0 (lease lost) per item.
local now_s = ARGV[1]
local now = tonumber(now_s)
local keep_age = tonumber(ARGV[2])
local keep_count = tonumber(ARGV[3])
local origin = ARGV[4]

-- Items in parallel arrays (no table per item): lease, kind, text, retry_at.
local ls, kinds, texts, ras = {}, {}, {}, {}
local i = 5
while i <= #ARGV do
  local n = #ls + 1
  ls[n] = ARGV[i]
  local kind = ARGV[i + 1]
  kinds[n] = kind
  texts[n] = ARGV[i + 2]
  if kind == 'r' then
    ras[n] = ARGV[i + 3]
    i = i + 4
  else
    i = i + 3
  end
end

local current = zmscore_all(K_LEASE, ls)
local used = {}
local out, done = {}, {}
local co, fa, fai, rd, sc, sci = {}, {}, {}, {}, {}, {}
for n = 1, #ls do
  local l = ls[n]
  if current[n] and not used[l] then
    used[l] = true
    done[#done + 1] = l
    local m = lease_job(l)
    local k = jk(m)
    local kind, text = kinds[n], texts[n]
    if kind == 'c' then
      if text ~= '' then
        redis.call('HSET', k, 'st', 'completed', 'f', now_s, 'r', text)
      else
        redis.call('HSET', k, 'st', 'completed', 'f', now_s)
      end
      if holds_unique(l) then release_unique(redis.call('HGET', k, 'u'), m) end
      co[#co + 1] = m
      co[#co + 1] = m
    else
      local f = redis.call('HMGET', k, 'a', 'pr', 'e', 'u')
      local ne = with_error(f[3], f[1], text, now_s)
      if kind == 'f' then
        redis.call('HSET', k, 'st', 'failed', 'f', now_s, 'e', ne)
        release_unique(f[4], m)
        fa[#fa + 1] = now_s
        fa[#fa + 1] = m
        fai[#fai + 1] = m
        fai[#fai + 1] = m
      elseif tonumber(ras[n]) > now then
        redis.call('HSET', k, 'st', 'scheduled', 'ra', ras[n], 'e', ne)
        sc[#sc + 1] = ras[n]
        sc[#sc + 1] = m
        sci[#sci + 1] = m
        sci[#sci + 1] = m
      else
        redis.call('HSET', k, 'st', 'ready', 'ra', ras[n], 'e', ne)
        rd[#rd + 1] = -tonumber(f[2])
        rd[#rd + 1] = m
      end
    end
    out[n] = 1
  else
    out[n] = 0
  end
end
zrem_all(K_LEASE, done)
zadd_all(ks('completed'), co)
zadd_all(kt('failed'), fa)
zadd_all(ks('failed'), fai)
zadd_all(K_READY, rd)
zadd_all(K_SCHED, sc)
zadd_all(ks('scheduled'), sci)
wake(#rd / 2)
if #sc > 0 then wake(1, 's:' .. origin) end

-- Retention of completed jobs, oldest first: beyond keep_count, then older than keep_age.
-- Bounded work per call; every call that completes jobs continues it.
if #co > 0 then
  local kc = ks('completed')
  if keep_count >= 0 then
    local excess = redis.call('ZCARD', kc) - keep_count
    if excess > 0 then
      if excess > 1000 then excess = 1000 end
      delete_jobs('completed', redis.call('ZRANGE', kc, 0, excess - 1))
    end
  end
  if keep_age >= 0 then
    local cutoff = now - keep_age
    local old = {}
    for r = 0, 99 do
      local head = redis.call('ZRANGE', kc, r, r)[1]
      if not head then break end
      local fin = redis.call('HGET', jk(head), 'f')
      if fin and tonumber(fin) >= cutoff then break end
      old[#old + 1] = head
    end
    if #old > 0 then delete_jobs('completed', old) end
  end
end
return out
