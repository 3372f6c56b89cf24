-- One history page: the activities between the bounds that the reader may see (and that match
-- the verb/actor filters), decided here from each activity's visibility line — bodies are only
-- fetched for the activities returned.
--
-- ARGV: lt, lt_inclusive, lt_score, gt, gt_inclusive, gt_score, direction ("desc"|"asc"),
--   want (matches to collect), budget (activities to examine at most),
--   sees_all ("1": feed admin or notification-feed owner), sub ("" for anonymous), member ("1"),
--   verb filter (""), actor filter (""), then the reader's roles.
-- Bounds are activity ids ("" for none). A bound that is no longer in the feed is placed by its
-- score (the time inside a ULID, "" if the id is not a ULID). "desc" walks from the newest end
-- of the window, "asc" from the oldest (the nearest ones above an id_gt bound).
-- Returns {"ok", last_examined_id, exhausted ("1"|""), n, id_1..id_n, body_1..body_n, hidden} in
-- walking order, or {"bad", message}. hidden: examined activities that match the filters but that
-- the reader may not see (their number only, so a reader can be told that some exist).
local CHUNK = 200

-- How many activities sort above `id` (its rank, whether or not it is still in the feed).
local function above(id, score)
  local rank = redis.call('ZREVRANK', K_IDX, id)
  if rank then return rank, true end
  if score == '' then return nil, false end
  local n = redis.call('ZCOUNT', K_IDX, '(' .. score, '+inf')
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_IDX, score, score)) do
    if m > id then n = n + 1 end
  end
  return n, false
end

local lo, hi = 0, redis.call('ZCARD', K_IDX)
if ARGV[1] ~= '' then
  local r, present = above(ARGV[1], ARGV[3])
  if r == nil then return {'bad', 'id_lt/id_lte: unknown activity id'} end
  if present and ARGV[2] ~= '1' then r = r + 1 end
  lo = r
end
if ARGV[4] ~= '' then
  local r, present = above(ARGV[4], ARGV[6])
  if r == nil then return {'bad', 'id_gt/id_gte: unknown activity id'} end
  if present and ARGV[5] == '1' then r = r + 1 end
  if r < hi then hi = r end
end

local ascending, want, budget = ARGV[7] == 'asc', tonumber(ARGV[8]), tonumber(ARGV[9])
local sees_all, sub, member = ARGV[10] == '1', ARGV[11], ARGV[12] == '1'
local verb_filter, actor_filter = ARGV[13], ARGV[14]
local roles = {}
for i = 15, #ARGV do roles[ARGV[i]] = true end

-- A visibility line is length-prefixed throughout (models.visibility): `<n>:<n bytes>` for the
-- actor, the verb and each identity/role id, so no character inside an id can forge a token.
-- `field` reads one such field at `pos`: its text and the position after it, or nil if malformed.
local function field(line, pos)
  local colon = string.find(line, ':', pos, true)
  if not colon then return nil end
  local digits = string.sub(line, pos, colon - 1)
  if not string.match(digits, '^%d+$') then return nil end
  local stop = colon + tonumber(digits)
  if stop > #line then return nil end
  return string.sub(line, colon + 1, stop), stop + 1
end

local function put(parts, text)
  parts[#parts + 1] = #text .. ':' .. text
end

-- The visibility line of an activity without one (written before lines existed): from its body.
local function line_of_body(id)
  local ok, doc = pcall(cjson.decode, redis.call('HGET', K_ACTS, id) or '{}')
  if not ok or type(doc) ~= 'table' then return nil end
  local actor = doc.actor
  if type(actor) == 'table' then actor = actor.id end
  local parts = {}
  put(parts, type(actor) == 'string' and actor or '')
  put(parts, type(doc.verb) == 'string' and doc.verb or '')
  for _, e in ipairs(type(doc.audience) == 'table' and doc.audience or {}) do
    local t = type(e) == 'table' and e.type or nil
    if t == 'public' then parts[#parts + 1] = 'p'
    elseif t == 'everyone' then parts[#parts + 1] = 'e'
    elseif t == 'members' then parts[#parts + 1] = 'm'
    elseif (t == 'identity' or t == 'role') and type(e.id) == 'string' then
      parts[#parts + 1] = string.sub(t, 1, 1)
      put(parts, e.id)
    end
  end
  return table.concat(parts)
end

local hidden = 0

-- The same rule as acl.Viewer.can_see, plus the filters. A malformed line admits nobody.
local function wanted(line)
  if not line then return false end
  local actor, pos = field(line, 1)
  if not actor then return false end
  local verb
  verb, pos = field(line, pos)
  if not verb then return false end
  if verb_filter ~= '' and verb ~= verb_filter then return false end
  if actor_filter ~= '' and actor ~= actor_filter then return false end
  if sees_all or (sub ~= '' and actor == sub) then return true end
  hidden = hidden + 1 -- taken back below when the audience lets the reader see it
  while pos <= #line do
    local kind = string.sub(line, pos, pos)
    pos = pos + 1
    local visible = false
    if kind == 'p' then visible = true
    elseif kind == 'e' then visible = sub ~= ''
    elseif kind == 'm' then visible = sub ~= '' and member
    elseif kind == 'i' or kind == 'r' then
      local id
      id, pos = field(line, pos)
      if not id then return false end
      visible = sub ~= '' and ((kind == 'i' and id == sub) or (kind == 'r' and roles[id] == true))
    else
      return false
    end
    if visible then
      hidden = hidden - 1
      return true
    end
  end
  return false
end

local ids, last, examined, exhausted = {}, '', 0, false
while #ids < want and examined < budget do
  local n = math.min(CHUNK, budget - examined)
  local chunk
  if ascending then
    if hi <= lo then exhausted = true break end
    local start = math.max(lo, hi - n)
    chunk = redis.call('ZREVRANGE', K_IDX, start, hi - 1)
    hi = start
    local flipped = {}
    for i = #chunk, 1, -1 do flipped[#flipped + 1] = chunk[i] end
    chunk = flipped
  else
    if lo >= hi then exhausted = true break end
    chunk = redis.call('ZREVRANGE', K_IDX, lo, math.min(lo + n, hi) - 1)
    lo = lo + #chunk
  end
  if #chunk == 0 then exhausted = true break end
  local lines = redis.call('HMGET', K_VIS, unpack(chunk))
  for j, id in ipairs(chunk) do
    examined = examined + 1
    last = id
    if wanted(lines[j] or line_of_body(id)) then
      ids[#ids + 1] = id
      if #ids >= want then break end
    end
  end
  if #ids < want and ((ascending and hi <= lo) or (not ascending and lo >= hi)) then exhausted = true end
end

local out = {'ok', last, exhausted and '1' or '', #ids}
for _, id in ipairs(ids) do out[#out + 1] = id end
for i = 1, #ids, 512 do
  for _, body in ipairs(redis.call('HMGET', K_ACTS, unpack(ids, i, math.min(i + 511, #ids)))) do
    out[#out + 1] = body or ''
  end
end
out[#out + 1] = hidden
return out
