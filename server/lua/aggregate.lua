-- Groups of an aggregated or notification feed (SPEC §12, server/aggregation.py), materialized
-- from the feed's change log so that a group keeps its id, members and counts however many
-- activities arrive after it. Group keys are rendered in Python (the aggregation_format
-- template); this script only files activities under the group ids it is given.
--
-- KEYS: the feed's keys (keys.FeedKeys), then Keys.aggregation: meta, of, t, m, g, z, a, unseen,
-- unread, then the feed's activity seen and read sets — all in the feed's slot.
-- ARGV[1] is the mode:
--   "apply", reset ("1": forget every group first), from_epoch, from_seq, to_epoch, to_seq, ops,
--       live ("1": a notification feed)
--       ops: JSON [["add", id, gid, key, verb, actor, time] | ["del", id], ...] in seq order.
--       Without reset, applies only if the groups were folded up to exactly (from_epoch,
--       from_seq), else returns {"moved"} (another reader folded first: read the log again).
--       With live, a fold that filed anything publishes the feed's counts (below).
--   "page", id_lt (a group id or ""), offset, limit, cap, budget
--       → {unseen, unread, more ("1"|""), {gid, group_json, unseen, unread, {bodies}}...} newest
--       group first, each with its newest `cap` members (bodies; "" when gone); stops early once
--       `budget` members were returned (at least one group). {"unknown"} for an unknown id_lt.
--   "mark", "seen"|"read", all ("1"), gid... → marks groups seen (or read and seen) until they
--       change again, and their activities with the feed's activity marks (as lua/marks.lua);
--       publishes the counts; returns {group unseen, group unread}.
-- The counts message, on the feed's channel (no seq, not logged; hub.py makes it the
-- `notifications` frame): {"counts": {"unseen", "unread"}, "groups": {"unseen", "unread"}} —
-- activities (as lua/marks.lua publishes them) and groups not seen/read.
local K_AMETA, K_OF, K_T, K_M, K_G, K_Z, K_A, K_UNSEEN, K_UNREAD =
  KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local K_SEEN, K_READ = KEYS[17], KEYS[18] -- the feed's activity marks (lua/marks.lua)
local mode = ARGV[1]
local MAX_MS = 9999999999999

local function clamp(ms)
  return math.max(0, math.min(MAX_MS, tonumber(ms)))
end

-- The id with every byte inverted, then a terminator that sorts above them all: lex order of
-- these is the reverse of the ids' order (prefixes included), so equal times list the larger
-- (newer) id first, as feed reads do.
local function reversed(id)
  return (string.gsub(id, '.', function(c) return string.char(255 - string.byte(c)) end)) .. '\255'
end

-- A group member: newest first (inverted time, then reversed id), the id itself last.
local function member(gid, ms, id)
  return gid .. '\0' .. string.format('%013d', MAX_MS - clamp(ms)) .. '\0' .. reversed(id) .. '\0' .. id
end

-- A group's place in the read order: newest activity time, then that activity's id.
local function place(ums, id, gid)
  return string.format('%013d', clamp(ums)) .. '\0' .. id .. '\0' .. gid
end

local function split(value)
  local a = string.find(value, '\0', 1, true)
  local b = string.find(value, '\0', a + 1, true)
  return string.sub(value, 1, a - 1), string.sub(value, a + 1, b - 1), string.sub(value, b + 1)
end

-- The activity id at the end of a member.
local function member_id(m)
  local at = #m
  while string.byte(m, at) ~= 0 do at = at - 1 end
  return string.sub(m, at + 1)
end

-- (ms, id) of a member.
local function member_at(m)
  local _, inv = split(m)
  return MAX_MS - tonumber(inv), member_id(m)
end

local function range_of(gid)
  return '[' .. gid .. '\0', '(' .. gid .. '\1'
end

-- The (ms, time, id) of a group's newest (rev = false) or oldest (rev = true) member.
local function edge(gid, rev)
  local lo, hi = range_of(gid)
  local hit
  if rev then
    hit = redis.call('ZREVRANGEBYLEX', K_M, hi, lo, 'LIMIT', 0, 1)[1]
  else
    hit = redis.call('ZRANGEBYLEX', K_M, lo, hi, 'LIMIT', 0, 1)[1]
  end
  local ms, id = member_at(hit)
  local _, _, time = split(redis.call('HGET', K_OF, id))
  return ms, time, id
end

local function load(gid)
  local raw = redis.call('HGET', K_G, gid)
  if raw then return cjson.decode(raw) end
  return nil
end

-- Store a group and its place in the read order (after its newest member changed).
local function save(gid, g)
  local _, _, newest = edge(gid, false)
  local at = place(g.ums, newest, gid)
  if g.zm ~= at then
    if g.zm then redis.call('ZREM', K_Z, g.zm) end
    redis.call('ZADD', K_Z, 0, at)
    g.zm = at
  end
  redis.call('HSET', K_G, gid, cjson.encode(g))
end

local function remove(id)
  local of = redis.call('HGET', K_OF, id)
  if not of then return end
  local gid, actor = split(of)
  local ms = redis.call('ZSCORE', K_T, id)
  redis.call('HDEL', K_OF, id)
  redis.call('ZREM', K_T, id)
  redis.call('ZREM', K_M, member(gid, ms, id))
  local g = load(gid)
  if not g then return end
  g.n = g.n - 1
  if redis.call('HINCRBY', K_A, gid .. '\0' .. actor, -1) <= 0 then
    redis.call('HDEL', K_A, gid .. '\0' .. actor)
    g.a = g.a - 1
  end
  if g.n <= 0 then
    redis.call('HDEL', K_G, gid)
    redis.call('ZREM', K_Z, g.zm)
    redis.call('SREM', K_UNSEEN, gid)
    redis.call('SREM', K_UNREAD, gid)
    return
  end
  g.ums, g.ut = edge(gid, false)
  g.cms, g.ct = edge(gid, true)
  save(gid, g)
end

local function add(id, gid, key, verb, actor, time)
  local ms = redis.call('ZSCORE', K_IDX, id)
  if not ms then return end -- deleted or trimmed since: a later event (or nothing) says so
  ms = tonumber(ms)
  local of = redis.call('HGET', K_OF, id)
  if of then
    -- Already filed here (a rebuild met its own event, or an update kept the group and time).
    if split(of) == gid and tonumber(redis.call('ZSCORE', K_T, id)) == ms then return end
    remove(id) -- an update that changed its group (or time): it moves
  end
  redis.call('HSET', K_OF, id, gid .. '\0' .. actor .. '\0' .. time)
  redis.call('ZADD', K_T, ms, id)
  redis.call('ZADD', K_M, 0, member(gid, ms, id))
  local g = load(gid) or {group = key, verb = verb, n = 0, a = 0, ct = time, ut = time, cms = ms, ums = ms}
  g.n = g.n + 1
  if redis.call('HINCRBY', K_A, gid .. '\0' .. actor, 1) == 1 then g.a = g.a + 1 end
  if ms >= g.ums then g.ums, g.ut = ms, time end
  if ms < g.cms then g.cms, g.ct = ms, time end
  save(gid, g)
  -- A group that gains an activity is new again to its reader (GetStream's rule).
  redis.call('SADD', K_UNSEEN, gid)
  redis.call('SADD', K_UNREAD, gid)
end

-- Publish the activity and group counts on the feed's channel; returns the group counts.
local function publish_counts()
  local total = redis.call('ZCARD', K_IDX)
  local unseen = total - redis.call('ZINTERCARD', 2, K_IDX, K_SEEN)
  local unread = total - redis.call('ZINTERCARD', 2, K_IDX, K_READ)
  local gunseen, gunread = redis.call('SCARD', K_UNSEEN), redis.call('SCARD', K_UNREAD)
  redis.call('SPUBLISH', K_CH, '{"counts":{"unseen":' .. unseen .. ',"unread":' .. unread ..
    '},"groups":{"unseen":' .. gunseen .. ',"unread":' .. gunread .. '}}')
  return gunseen, gunread
end

if mode == 'apply' then
  local reset = ARGV[2] == '1'
  if reset then
    redis.call('DEL', K_AMETA, K_OF, K_T, K_M, K_G, K_Z, K_A, K_UNSEEN, K_UNREAD)
  else
    local state = redis.call('HMGET', K_AMETA, 'epoch', 'seq')
    if state[1] ~= ARGV[3] or state[2] ~= ARGV[4] then return {'moved'} end
  end
  local ops = cjson.decode(ARGV[7])
  local filed = reset or #ops > 0
  for _, op in ipairs(ops) do
    if op[1] == 'add' then
      add(op[2], op[3], op[4], op[5], op[6], op[7])
    else
      remove(op[2])
    end
  end
  -- Trimming (max length, retention) drops a feed's oldest activities without a change event:
  -- drop them from their groups too (they are the oldest filed ones).
  for _ = 1, 1000 do
    local oldest = redis.call('ZRANGE', K_T, 0, 0)[1]
    if not oldest or redis.call('ZSCORE', K_IDX, oldest) then break end
    remove(oldest)
    filed = true
  end
  if reset then
    -- Rebuilt groups are new, except those whose every activity is already marked seen/read.
    local unseen, unread = {}, {}
    local of = redis.call('HGETALL', K_OF)
    for i = 1, #of, 2 do
      local gid = split(of[i + 1])
      if redis.call('SISMEMBER', K_SEEN, of[i]) == 0 then unseen[gid] = true end
      if redis.call('SISMEMBER', K_READ, of[i]) == 0 then unread[gid] = true end
    end
    for _, gid in ipairs(redis.call('HKEYS', K_G)) do
      if not unseen[gid] then redis.call('SREM', K_UNSEEN, gid) end
      if not unread[gid] then redis.call('SREM', K_UNREAD, gid) end
    end
  end
  redis.call('HSET', K_AMETA, 'epoch', ARGV[5], 'seq', ARGV[6])
  if filed and ARGV[8] == '1' then publish_counts() end
  return {'ok'}
end

if mode == 'page' then
  local start = 0
  if ARGV[2] ~= '' then
    local g = load(ARGV[2])
    local rank = g and redis.call('ZREVRANK', K_Z, g.zm)
    if not rank then return {'unknown'} end
    start = rank + 1
  end
  start = start + tonumber(ARGV[3])
  local limit, cap, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local gids = {}
  for _, at in ipairs(redis.call('ZREVRANGE', K_Z, start, start + limit)) do gids[#gids + 1] = member_id(at) end
  local groups, spent = {}, 0
  for i = 1, math.min(limit, #gids) do
    if spent >= budget then break end
    local gid = gids[i]
    local lo, hi = range_of(gid)
    local ids = {}
    for _, m in ipairs(redis.call('ZRANGEBYLEX', K_M, lo, hi, 'LIMIT', 0, cap)) do ids[#ids + 1] = member_id(m) end
    local bodies = {}
    if #ids > 0 then
      for _, body in ipairs(redis.call('HMGET', K_ACTS, unpack(ids))) do bodies[#bodies + 1] = body or '' end
    end
    spent = spent + #ids
    groups[#groups + 1] = {
      gid, redis.call('HGET', K_G, gid), redis.call('SISMEMBER', K_UNSEEN, gid),
      redis.call('SISMEMBER', K_UNREAD, gid), bodies,
    }
  end
  local more = (#groups < #gids) and '1' or ''
  local out = {redis.call('SCARD', K_UNSEEN), redis.call('SCARD', K_UNREAD), more}
  for _, g in ipairs(groups) do out[#out + 1] = g end
  return out
end

if mode == 'mark' then
  local read = ARGV[2] == 'read'
  local ids = {}
  if ARGV[3] == '1' then
    redis.call('DEL', K_UNSEEN)
    if read then redis.call('DEL', K_UNREAD) end
    ids = redis.call('ZRANGE', K_IDX, 0, -1)
  else
    for i = 4, #ARGV do
      redis.call('SREM', K_UNSEEN, ARGV[i])
      if read then redis.call('SREM', K_UNREAD, ARGV[i]) end
      local lo, hi = range_of(ARGV[i])
      for _, m in ipairs(redis.call('ZRANGEBYLEX', K_M, lo, hi)) do ids[#ids + 1] = member_id(m) end
    end
  end
  if #ids > 0 then
    add_marks(K_SEEN, ids)
    if read then add_marks(K_READ, ids) end
  end
  return {publish_counts()}
end

return redis.error_reply('aggregate.lua: unknown mode ' .. tostring(mode))
