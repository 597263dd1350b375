-- search: one queue's part of a search, in member (= id) order. Bounded: reads at most
-- n + 1 members per state and examines at most n jobs.
-- ARGV: mode ('i' indexed: the first n jobs of the states; 's' scan: examine up to n jobs,
--       returning those matching; 'c' count: the same, counting), order ('a' ascending or
--       'd' descending), bound (the first member to consider, inclusive; '' for none), n,
--       limit (scan, count: stop after this many matches), states (comma-separated), name
--       ('' or '=' then the name), text (lowercase; '' for none), created from, created
--       until, finished from, finished until ('' for an open end), now, with total ('1'),
--       ids only ('1': 'i' returns members without their records).
-- Returns for 'i': { total | false, then member, {record fields} per job }, or with ids
--         only { total | false, then member per job };
--         for 's': { next | false, examined, then member, {record fields} per match };
--         for 'c': { next | false, examined, matches }.
-- `next` is the first member not examined (continue from it), false when none is left.
local mode, asc, n, limit = ARGV[1], ARGV[2] == 'a', tonumber(ARGV[4]), tonumber(ARGV[5])
local bound = ARGV[3]
if bound == '' then bound = nil end
local states = {}
for st in string.gmatch(ARGV[6], '[^,]+') do states[#states + 1] = st end
-- Due scheduled jobs are ready, as reserve would make them.
promote(ARGV[13], '1000')

-- The next n + 1 jobs of the states past the bound, in order, and each one's state.
local function candidates(k)
  local all, st_of = {}, {}
  for _, st in ipairs(states) do
    for _, m in ipairs(walk(st, bound, asc, k)) do
      all[#all + 1] = m
      st_of[m] = st
    end
  end
  if asc then table.sort(all) else table.sort(all, function(x, y) return x > y end) end
  for i = #all, k + 1, -1 do all[i] = nil end
  return all, st_of
end

if mode == 'i' then
  local out = { false }
  if ARGV[14] == '1' then
    local total = 0
    for _, st in ipairs(states) do
      if st == 'ready' then
        total = total + ready_count() + redis.call('ZCARD', K_GALL)
      elseif st == 'running' then
        total = total + redis.call('ZCARD', K_LEASE)
        if redis.call('ZSCORE', K_LEASE, SENT) then total = total - 1 end
      elseif st == 'completed' then
        total = total + done_count()
      else
        total = total + redis.call('ZCARD', ks(st))
      end
    end
    out[1] = total
  end
  local ms, st_of = candidates(n)
  if ARGV[15] == '1' then
    for _, m in ipairs(ms) do out[#out + 1] = m end
    return out
  end
  local sts = {}
  for i, m in ipairs(ms) do sts[i] = st_of[m] end
  return append_records(out, ms, sts)
end

-- Scan: the filter's other fields, checked on each job.
local name = nil
if ARGV[7] ~= '' then name = string.sub(ARGV[7], 2) end
local text = nil
if ARGV[8] ~= '' then text = ARGV[8] end
-- Errors are stored as JSON: a text with none of the characters JSON escapes appears in an
-- error's JSON exactly when it appears in its text (or in the JSON around it), so the JSON
-- is decoded only when it contains the text.
local plain_text = text and not string.find(text, '[%c"/\\]')
local function num(x) if x == '' then return nil end return tonumber(x) end
local c_from, c_until, f_from, f_until = num(ARGV[9]), num(ARGV[10]), num(ARGV[11]), num(ARGV[12])
local want_fin = f_from ~= nil or f_until ~= nil
local FINAL = { completed = true, failed = true, cancelled = true }
local function has(hay, lowered)
  return hay and string.find(string.lower(hay), lowered, 1, true) ~= nil
end
local function in_errors(e)
  if not e then return false end
  local low = string.lower(e)
  if not string.find(low, text, 1, true) then
    if plain_text then return false end
  end
  local ok, list = pcall(cjson.decode, '[' .. e .. ']')
  if not ok or type(list) ~= 'table' then return false end
  for _, x in ipairs(list) do
    if type(x) == 'table' and type(x.error) == 'string' and has(x.error, text) then
      return true
    end
  end
  return false
end
local function matches(s, fin, err, st)
  -- The trace context's length (layout 7), when there is one: the payload comes after it.
  local ul, nl, cr, tl, at =
    string.match(s, '^(%d+),(%d+),%-?%d*,%d*,(%-?%d+),[%+%-]?%d*,?(%d*)|()')
  if not ul then return false end
  ul, nl, cr, tl = tonumber(ul), tonumber(nl), tonumber(cr), tonumber(tl) or 0
  if name and string.sub(s, at + ul, at + ul + nl - 1) ~= name then return false end
  if (c_from and cr < c_from) or (c_until and cr >= c_until) then return false end
  if want_fin then
    local f = FINAL[st] and tonumber(fin)
    if not f or (f_from and f < f_from) or (f_until and f >= f_until) then return false end
  end
  if text then
    return has(string.sub(s, at + ul + nl + tl), text) or in_errors(err)
      or (ul > 0 and has(string.sub(s, at, at + ul - 1), text))
  end
  return true
end

local ms, st_of = candidates(n + 1)
local upto = math.min(n, #ms)
local exam = {}
for i = 1, upto do exam[i] = ms[i] end
local specs = hmget_all(K_SPEC, exam)
local fins, errs = {}, {}
if want_fin then
  fins = hmget_all(K_FIN, exam)
  -- A completed job's time is in its list entry (see `kdl`).
  for i, m in ipairs(exam) do
    if not fins[i] and st_of[m] == 'completed' then
      local e = done_entry(m)
      if e then fins[i] = done_fields(e) end
    end
  end
end
if text and redis.call('HLEN', K_ERR) > 1 then errs = hmget_all(K_ERR, exam) end
local found, found_st = {}, {}
local examined = 0
local stop = upto
for i = 1, upto do
  examined = i
  local m = ms[i]
  if specs[i] and matches(specs[i], fins[i], errs[i], st_of[m]) then
    found[#found + 1] = m
    found_st[#found_st + 1] = st_of[m]
    if #found >= limit then
      stop = i
      break
    end
  end
end
local next_m = ms[stop + 1] or false
if mode == 'c' then return { next_m, examined, #found } end
local out = { next_m, examined }
return append_records(out, found, found_st)
