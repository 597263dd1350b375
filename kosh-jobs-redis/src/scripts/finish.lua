-- finish: ends attempts whose lease is current.
-- ARGV: now, keep_age_ms (-1 = forever), keep_count (-1 = unlimited), origin,
--       then per item: member, token, kind (c|r|f), text (result JSON, '' or error), retry_at
-- Returns one 1 (applied) or 0 (lease lost) per item.
local now_s = ARGV[1]
local now = tonumber(now_s)
local keep_age = tonumber(ARGV[2])
local keep_count = tonumber(ARGV[3])
local origin = ARGV[4]
local out = {}
local done = {}
local co, coi, fa, fai, rd, rdi, sc, sci = {}, {}, {}, {}, {}, {}, {}, {}
local n = (#ARGV - 4) / 5
for i = 0, n - 1 do
  local b = 5 + i * 5
  local m, tok, kind, text = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local k = jk(m)
  local f = redis.call('HMGET', k, 'st', 't', 'a', 'u', 'pr')
  if f[1] == 'running' and f[2] == tok then
    done[#done + 1] = m
    if kind == 'c' then
      if text ~= '' then
        redis.call('HSET', k, 'st', 'completed', 'f', now_s, 'r', text)
      else
        redis.call('HSET', k, 'st', 'completed', 'f', now_s)
      end
      if f[4] then release_unique(f[4], m) end
      co[#co + 1] = now_s
      co[#co + 1] = m
      coi[#coi + 1] = m
      coi[#coi + 1] = m
    else
      local ne = with_error(redis.call('HGET', k, 'e'), f[3], text, now_s)
      if kind == 'f' then
        redis.call('HSET', k, 'st', 'failed', 'f', now_s, 'e', ne)
        if f[4] then release_unique(f[4], m) end
        fa[#fa + 1] = now_s
        fa[#fa + 1] = m
        fai[#fai + 1] = m
        fai[#fai + 1] = m
      else
        local ra = ARGV[b + 4]
        if tonumber(ra) > now then
          redis.call('HSET', k, 'st', 'scheduled', 'ra', ra, 'e', ne)
          sc[#sc + 1] = ra
          sc[#sc + 1] = m
          sci[#sci + 1] = m
          sci[#sci + 1] = m
        else
          redis.call('HSET', k, 'st', 'ready', 'ra', ra, 'e', ne)
          rd[#rd + 1] = -tonumber(f[5])
          rd[#rd + 1] = m
          rdi[#rdi + 1] = m
          rdi[#rdi + 1] = m
        end
      end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
zrem_all(K_LEASE, done)
zrem_all(ks('running'), done)
zadd_all(kt('completed'), co)
zadd_all(ks('completed'), coi)
zadd_all(kt('failed'), fa)
zadd_all(ks('failed'), fai)
zadd_all(K_READY, rd)
zadd_all(ks('ready'), rdi)
zadd_all(K_SCHED, sc)
zadd_all(ks('scheduled'), sci)
wake(#rd / 2)
if #sc > 0 then wake(1, 's:' .. origin) end

-- Retention of completed jobs: by count, then by age; bounded work per call.
if #co > 0 then
  local victims = {}
  local seen = {}
  if keep_count >= 0 then
    local excess = redis.call('ZCARD', kt('completed')) - keep_count
    if excess > 0 then
      if excess > 1000 then excess = 1000 end
      for _, m in ipairs(redis.call('ZRANGE', kt('completed'), 0, excess - 1)) do
        victims[#victims + 1] = m
        seen[m] = true
      end
    end
  end
  if keep_age >= 0 then
    local cutoff = now - keep_age
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', kt('completed'), '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)) do
      if not seen[m] then victims[#victims + 1] = m end
    end
  end
  if #victims > 0 then delete_jobs('completed', victims) end
end
return out
