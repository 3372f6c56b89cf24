-- Shared prelude, prepended to every script by store.py (Redis scripts cannot import each other).
--
-- KEYS, in the order of keys.FeedKeys: meta, idx, acts, fid, log, channel, vis.
-- Every write script follows the same discipline: resolve and check everything first, then
-- change state; each change takes the next seq, stores the body, updates both indexes, appends
-- the change event to the log (trimmed to the resume window) and publishes the very same bytes.
local K_META, K_IDX, K_ACTS, K_FID, K_LOG, K_CH, K_VIS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

-- The feed's epoch; created (from the caller's random candidate) with the feed's counter.
local function feed_epoch(candidate)
  local epoch = redis.call('HGET', K_META, 'epoch')
  if not epoch then
    redis.call('HSET', K_META, 'epoch', candidate, 'seq', 0)
    epoch = candidate
  end
  return epoch
end

-- Foreign-id index entries sort by foreign_id, then time, then id: a lex range finds one
-- (foreign_id, time) pair or every activity of a foreign_id.
local function fid_member(fid, time, id)
  return fid .. '\0' .. time .. '\0' .. id
end

local function fid_lookup(fid, time)
  local prefix = fid .. '\0' .. time .. '\0'
  local hit = redis.call('ZRANGEBYLEX', K_FID, '[' .. prefix, '(' .. fid .. '\0' .. time .. '\1', 'LIMIT', 0, 1)
  if hit[1] then
    return string.sub(hit[1], #prefix + 1)
  end
  return nil
end

-- The few fields of a stored body the scripts need (cjson only reads; bodies are never re-encoded).
local function summary(body)
  local ok, doc = pcall(cjson.decode, body)
  if not ok or type(doc) ~= 'table' then
    return {actor = nil, version = 0}
  end
  local actor = doc.actor
  if type(actor) == 'table' then actor = actor.id end
  return {
    id = doc.id, actor = actor, version = tonumber(doc.version) or 0, created_at = doc.created_at,
    foreign_id = doc.foreign_id, time = doc.time, audience = doc.audience, to = doc.to,
  }
end

-- {"actor":…,"audience":[…]}: what subscribers need to know about who could see the old version.
local function visibility_json(s)
  local aud = '[]'
  if type(s.audience) == 'table' and #s.audience > 0 then aud = cjson.encode(s.audience) end
  local actor = 'null'
  if type(s.actor) == 'string' then actor = cjson.encode(s.actor) end
  return '{"actor":{"id":' .. actor .. '},"audience":' .. aud .. '}'
end

-- Remove an activity's body and index entries (used by delete and by trimming).
local function drop(id, body)
  local s = summary(body)
  if s.foreign_id and s.time then
    redis.call('ZREM', K_FID, fid_member(s.foreign_id, s.time, id))
  end
  redis.call('HDEL', K_ACTS, id)
  redis.call('HDEL', K_VIS, id)
  redis.call('ZREM', K_IDX, id)
  return s
end

-- The change events of this script call, in seq order. `emit` records one (`activity` and `prev`
-- are JSON texts); `flush` appends them all to the log (trimmed to the resume window) and publishes
-- them in one message: the event itself, or a JSON array of them when there are several.
local EVENTS = {}

local function emit(seq, epoch, feed, event, activity, prev)
  local msg = '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '","event":"' .. event .. '","feed":"' .. feed ..
    '","activity":' .. activity
  if prev then msg = msg .. ',"prev":' .. prev end
  EVENTS[#EVENTS + 1] = msg .. '}'
end

local function flush(window)
  local n = #EVENTS
  if n == 0 then return end
  for i = 1, n, 500 do
    redis.call('LPUSH', K_LOG, unpack(EVENTS, i, math.min(i + 499, n)))
  end
  redis.call('LTRIM', K_LOG, 0, window - 1)
  if n == 1 then
    redis.call('SPUBLISH', K_CH, EVENTS[1])
  else
    redis.call('SPUBLISH', K_CH, '[' .. table.concat(EVENTS, ',') .. ']')
  end
end

-- `command key a b c …` for a list of arguments (pairs for HSET/ZADD), a few hundred per call:
-- one redis.call costs far more than the command it runs, so scripts send work in bulk.
local function send_all(command, key, args)
  for i = 1, #args, 512 do
    redis.call(command, key, unpack(args, i, math.min(i + 511, #args)))
  end
end

-- Remove activities (and their index entries) in bulk; only bodies that carry a foreign_id are
-- decoded, to find their foreign-id index entry.
local function drop_many(ids)
  if #ids == 0 then return end
  local fids = {}
  for i = 1, #ids, 512 do
    local chunk = {unpack(ids, i, math.min(i + 511, #ids))}
    for j, body in ipairs(redis.call('HMGET', K_ACTS, unpack(chunk))) do
      if body and string.find(body, '"foreign_id":', 1, true) then
        local s = summary(body)
        if s.foreign_id and s.time then fids[#fids + 1] = fid_member(s.foreign_id, s.time, chunk[j]) end
      end
    end
  end
  send_all('HDEL', K_ACTS, ids)
  send_all('HDEL', K_VIS, ids)
  send_all('ZREM', K_IDX, ids)
  send_all('ZREM', K_FID, fids)
end

-- Keep the feed within max_len activities and, when cutoff > 0, drop activities older than it.
-- Trimming is housekeeping, not a change: it takes no seq and sends no event.
local function trim(max_len, cutoff)
  local extra = redis.call('ZCARD', K_IDX) - max_len
  if extra > 0 then
    drop_many(redis.call('ZRANGE', K_IDX, 0, extra - 1))
  end
  if cutoff > 0 then
    drop_many(redis.call('ZRANGEBYSCORE', K_IDX, '-inf', '(' .. cutoff, 'LIMIT', 0, 100))
  end
end

-- The stored body: server-owned fields around the caller's encoded rest (which starts with '{'
-- and ends with '}').
local function assemble(id, seq, rest, created_at, version)
  return '{"id":' .. cjson.encode(id) .. ',"seq":' .. seq .. ',' .. string.sub(rest, 2, -2) ..
    ',"created_at":"' .. created_at .. '","version":' .. version .. '}'
end

-- Add ids to a mark set (seen or read) of the feed; forget marks of activities that left the feed
-- once they outnumber the feed itself (notification marks: marks.lua, aggregate.lua).
local function add_marks(key, ids)
  for i = 1, #ids, 500 do
    redis.call('SADD', key, unpack(ids, i, math.min(i + 499, #ids)))
  end
  if redis.call('SCARD', key) > 2 * redis.call('ZCARD', K_IDX) + 100 then
    for _, id in ipairs(redis.call('SMEMBERS', key)) do
      if not redis.call('ZSCORE', K_IDX, id) then redis.call('SREM', key, id) end
    end
  end
end
