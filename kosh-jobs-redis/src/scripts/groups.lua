-- groups: one page of the queue's groups, by key as bytes, past a key: every group with a
-- ready or running job, or with a start inside the group rate window, and where it stands
-- against the group limits (as `group_room` in the memory backend).
-- ARGV: now, after (the last key of the previous page; '' for the first page), n (the page
-- size + 1, so the caller knows whether a group is left after the page).
-- Returns { 1 when due scheduled jobs were left unpromoted (the ready counts are then lower
--           bounds) else 0, then per group: key, ready jobs, running jobs, starts in the
--           window, 1 at its limit else 0, when its window opens if that holds it | false }.
--
-- The groups of a queue are spread over gturns, gpark and grun (and glogs for the groups
-- with nothing left but recent starts), none of them ordered by key, so every call collects
-- them: one ZUNIONSTORE into a scratch set (all scores 0, so ZRANGEBYLEX walks it in byte
-- order, memcmp, whatever locale Lua's string comparison would use), deleted before the
-- script returns. Cost: O(G log G) for the G groups of the queue to collect (about 1 us per
-- group: 100 ms at 100,000 groups), then at most four O(1) or O(log N) commands per group
-- walked: the page, plus the entries found with nothing left (a served group keeps its turn
-- until a reserve finds it empty), at most G.
local now_s = ARGV[1]
local now = tonumber(now_s)
local want = tonumber(ARGV[3])
-- Due scheduled jobs are ready, as reserve would make them (and `counts` counts them).
promote(now_s, '1000')
local left = 0
if #redis.call('ZRANGEBYSCORE', K_SCHED, '-inf', now_s, 'LIMIT', '0', '1') > 0 then left = 1 end
local lim = redis.call('HMGET', K_LIM, 'g', 'gm', 'gp')
local cap = tonumber(lim[1])
local gr = nil
if lim[2] then gr = { tonumber(lim[2]), tonumber(lim[3]) } end

local sort = B .. ':gsort'
redis.call('DEL', sort)
redis.call('ZUNIONSTORE', sort, '2', K_GTURNS, K_GPARK, 'WEIGHTS', '0', '0')
local extra = {}
-- One field per group with a running job: at most as many as running jobs.
for _, g in ipairs(redis.call('HKEYS', K_GRUN)) do
  extra[#extra + 1] = '0'
  extra[#extra + 1] = g
end
local from = nil
if gr then
  from = string.format('%d', now - gr[2])
  -- The groups whose latest start is inside the window (older ones count no start).
  for _, g in ipairs(redis.call('ZRANGEBYSCORE', K_GLOGS, '(' .. from, '+inf')) do
    extra[#extra + 1] = '0'
    extra[#extra + 1] = g
  end
end
zadd_all(sort, extra)

local out = { left }
local found = 0
local lo = '-'
if ARGV[2] ~= '' then lo = '(' .. ARGV[2] end
while found < want do
  local names = redis.call('ZRANGEBYLEX', sort, lo, '+', 'LIMIT', '0', '100')
  if #names == 0 then break end
  for _, g in ipairs(names) do
    local ready = redis.call('ZCARD', kg(g))
    local running = tonumber(redis.call('HGET', K_GRUN, g)) or 0
    local starts = 0
    if gr then starts = redis.call('ZCOUNT', kgl(g), '(' .. from, '+inf') end
    if ready > 0 or running > 0 or starts > 0 then
      local full, opens = 0, false
      if cap and running >= cap then
        full = 1
      elseif gr then
        local at = group_opens(g, gr, 0, now)
        if at then
          full = 1
          opens = string.format('%d', at)
        end
      end
      out[#out + 1] = g
      out[#out + 1] = ready
      out[#out + 1] = running
      out[#out + 1] = starts
      out[#out + 1] = full
      out[#out + 1] = opens
      found = found + 1
      if found == want then break end
    end
  end
  lo = '(' .. names[#names]
end
redis.call('DEL', sort)
return out
