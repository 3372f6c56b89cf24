-- Read reactions of one feed's slot in one call (SPEC §12), as JSON text ready to splice.
-- KEYS 1: rx (reaction bodies), 2: acts (the feed's activities), 3: rxh (reaction id -> how many
-- child reactions it has, absent for none), 4: rxs (activity id -> its cached counts and latest
-- reactions, see mode "a"). The per-target keys
-- (rxc:<t>, rxi:<t>:<kind>, rxu:<t>:<user>) are named from ARGV[2], the feed's key base
-- "<prefix>{<feed>}:": they share the feed's hash tag, so the call stays in one slot.
-- ARGV: mode, base, user ("" for none), recent_limit, child_limit, flags, n_kinds, kinds…, ids…
--   flags: "c" reaction_counts, "r" latest_reactions, "o" own_reactions, "O" own_children,
--   "C" the limits are the defaults (the cache in rxs applies).
--   mode "a": ids are activity ids; returns, per id, the text
--     "reaction_counts":{…},"latest_reactions":{…},"own_reactions":{…} (the asked-for parts).
--   mode "r": ids are reaction ids; returns, per id, the reaction with "children_counts",
--     "latest_children" (and "own_children"), or "" when missing, or "\0<activity id>" when its
--     activity is gone (the caller hides it and cleans it up).
-- Every reaction returned carries children_counts/latest_children; children of children carry
-- their counts and their own latest children, down to MAX_DEPTH levels.
local K_RX, K_ACTS, K_RXH, K_RXS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, base, user = ARGV[1], ARGV[2], ARGV[3]
local recent_limit, child_limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local flags = ARGV[6]
local n_kinds = tonumber(ARGV[7])
local only = nil
if n_kinds > 0 then
  only = {}
  for i = 1, n_kinds do only[ARGV[7 + i]] = true end
end
local first = 8 + n_kinds
local MAX_DEPTH = 3
local OWN_LIMIT = 100

local function has(flag) return string.find(flags, flag, 1, true) ~= nil end
local want_counts, want_recent, want_own, want_own_children = has('c'), has('r'), has('o'), has('O')
local cacheable = has('C') and not only and not want_own_children

-- A redis.call costs far more than the command it runs: bodies (and whether each reaction has
-- children, K_RXH) are fetched in bulk, once per id.
local bodies, parents = {}, {}
local function fetch(ids)
  local wanted = {}
  for _, id in ipairs(ids) do
    if bodies[id] == nil then
      wanted[#wanted + 1] = id
      bodies[id] = false
    end
  end
  for i = 1, #wanted, 500 do
    local chunk = {unpack(wanted, i, math.min(i + 499, #wanted))}
    local found = redis.call('HMGET', K_RX, unpack(chunk))
    local kids = redis.call('HMGET', K_RXH, unpack(chunk))
    for j, id in ipairs(chunk) do
      bodies[id] = found[j] or false
      parents[id] = kids[j] and tonumber(kids[j]) > 0
    end
  end
end

-- {"kind":n,…} of target t (in the hash's order), and its kinds; ``filter`` keeps some kinds.
local function counts(t, filter)
  local flat = redis.call('HGETALL', base .. 'rxc:' .. t)
  local parts, kinds = {}, {}
  for i = 1, #flat, 2 do
    if not filter or filter[flat[i]] then
      parts[#parts + 1] = cjson.encode(flat[i]) .. ':' .. flat[i + 1]
      kinds[#kinds + 1] = flat[i]
    end
  end
  return '{' .. table.concat(parts, ',') .. '}', kinds
end

-- The kind of a stored reaction body (orjson writes "id" then "kind"; anything else is decoded).
local function kind_of(body)
  local kind = string.match(body, '^{"id":"[^"\\]*","kind":"([^"\\]*)"')
  return kind or cjson.decode(body).kind
end

local decorate

-- A JSON list of the reactions ``ids`` (fetched; missing ones skipped), each decorated.
local function list(ids, depth)
  local parts = {}
  for _, id in ipairs(ids) do
    local body = bodies[id]
    if body then parts[#parts + 1] = decorate(body, id, depth) end
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

-- {"kind":[…],…} of the reactions ``ids`` (fetched; newest first), grouped by kind in order of
-- first appearance, at most ``limit`` per kind, only kinds in ``filter`` when given.
local function by_kind(ids, filter, limit, depth)
  local order, groups = {}, {}
  for _, id in ipairs(ids) do
    local body = bodies[id]
    if body then
      local kind = kind_of(body)
      if not filter or filter[kind] then
        local group = groups[kind]
        if not group then
          group = {}
          groups[kind] = group
          order[#order + 1] = kind
        end
        if #group < limit then group[#group + 1] = decorate(body, id, depth) end
      end
    end
  end
  local parts = {}
  for _, kind in ipairs(order) do
    parts[#parts + 1] = cjson.encode(kind) .. ':[' .. table.concat(groups[kind], ',') .. ']'
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function own_index(t)
  return redis.call('ZREVRANGEBYLEX', base .. 'rxu:' .. t .. ':' .. user, '+', '-', 'LIMIT', 0, OWN_LIMIT)
end

-- The reaction ``body`` (JSON object text) of reaction ``rid`` with its children's fields (the
-- same reaction often shows in both latest and own reactions: built once per depth).
local built = {}
local build
decorate = function(body, rid, depth)
  local key = rid .. '\0' .. depth
  local text = built[key]
  if not text then
    text = build(body, rid, depth)
    built[key] = text
  end
  return text
end

build = function(body, rid, depth)
  local head = string.sub(body, 1, -2)
  if not parents[rid] then
    if want_own_children then
      return head .. ',"children_counts":{},"latest_children":{},"own_children":{}}'
    end
    return head .. ',"children_counts":{},"latest_children":{}}'
  end
  local cc, kinds = counts(rid, nil)
  local latest = {}
  if depth < MAX_DEPTH then
    for _, kind in ipairs(kinds) do
      local ids = redis.call('ZREVRANGEBYLEX', base .. 'rxi:' .. rid .. ':' .. kind, '+', '-', 'LIMIT', 0, child_limit)
      fetch(ids)
      latest[#latest + 1] = cjson.encode(kind) .. ':' .. list(ids, depth + 1)
    end
  end
  local extra = ''
  if want_own_children then
    local own = '{}'
    if user ~= '' and depth < MAX_DEPTH then
      local ids = own_index(rid)
      fetch(ids)
      own = by_kind(ids, nil, child_limit, depth + 1)
    end
    extra = ',"own_children":' .. own
  end
  return head .. ',"children_counts":' .. cc .. ',"latest_children":{' .. table.concat(latest, ',') .. '}' .. extra .. '}'
end

local out = {}
if mode == 'a' then
  -- The user-independent part (counts and latest reactions, default limits, no kind filter) of
  -- each activity is kept in K_RXS (``counts\nlatest``; compact JSON has no raw newline), written
  -- here on a miss and dropped by every change of the activity's reactions (lua/reaction.lua).
  local aids = {}
  for i = first, #ARGV do aids[#aids + 1] = ARGV[i] end
  local cached = {}
  if cacheable and #aids > 0 then cached = redis.call('HMGET', K_RXS, unpack(aids)) end
  -- First every index (ids), then every body in one go, then the text.
  local plans, wanted = {}, {}
  for n, aid in ipairs(aids) do
    local plan = {}
    local hit = cached[n]
    if hit then
      local cut = string.find(hit, '\n', 1, true)
      plan.counts, plan.latest_text = string.sub(hit, 1, cut - 1), string.sub(hit, cut + 1)
    else
      plan.counts, plan.kinds = counts(aid, only)
      if want_recent then
        plan.latest = {}
        for k, kind in ipairs(plan.kinds) do
          local ids = redis.call('ZREVRANGEBYLEX', base .. 'rxi:' .. aid .. ':' .. kind, '+', '-', 'LIMIT', 0, recent_limit)
          plan.latest[k] = ids
          for _, id in ipairs(ids) do wanted[#wanted + 1] = id end
        end
      end
    end
    if want_own and user ~= '' then
      plan.own = own_index(aid)
      for _, id in ipairs(plan.own) do wanted[#wanted + 1] = id end
    end
    plans[#plans + 1] = plan
  end
  fetch(wanted)
  local store = {}
  for n, plan in ipairs(plans) do
    local parts = {}
    if want_counts then parts[#parts + 1] = '"reaction_counts":' .. plan.counts end
    if want_recent then
      if not plan.latest_text then
        local latest = {}
        for k, kind in ipairs(plan.kinds) do
          latest[#latest + 1] = cjson.encode(kind) .. ':' .. list(plan.latest[k], 1)
        end
        plan.latest_text = '{' .. table.concat(latest, ',') .. '}'
        if cacheable then
          store[#store + 1] = aids[n]
          store[#store + 1] = plan.counts .. '\n' .. plan.latest_text
        end
      end
      parts[#parts + 1] = '"latest_reactions":' .. plan.latest_text
    end
    if want_own then
      parts[#parts + 1] = '"own_reactions":' .. (plan.own and by_kind(plan.own, only, recent_limit, 1) or '{}')
    end
    out[#out + 1] = table.concat(parts, ',')
  end
  if #store > 0 then redis.call('HSET', K_RXS, unpack(store)) end
else
  local ids = {}
  for i = first, #ARGV do ids[#ids + 1] = ARGV[i] end
  fetch(ids)
  local alive = {}
  for _, rid in ipairs(ids) do
    local body = bodies[rid]
    if not body then
      out[#out + 1] = ''
    else
      local aid = cjson.decode(body).activity_id
      if alive[aid] == nil then alive[aid] = redis.call('HEXISTS', K_ACTS, aid) == 1 end
      if alive[aid] then
        out[#out + 1] = decorate(body, rid, 1)
      else
        out[#out + 1] = '\0' .. aid
      end
    end
  end
end
return out
