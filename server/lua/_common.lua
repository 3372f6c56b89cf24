-- Shared prelude, prepended to every script by store.py (Redis scripts cannot import each other).
--
-- KEYS, in the order of keys.FeedKeys: meta, idx, acts, fid, log, channel.
-- Every write script follows the same discipline: resolve and check everything first, then
-- change state; each change takes the next seq, stores the body, updates both indexes, appends
-- the change event to the log (trimmed to the resume window) and publishes the very same bytes.
local K_META, K_IDX, K_ACTS, K_FID, K_LOG, K_CH = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

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
  redis.call('ZREM', K_IDX, id)
  return s
end

-- Append a change event to the log and publish it. `activity` and `prev` are JSON texts.
local function emit(seq, epoch, feed, event, activity, prev, window)
  local msg = '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '","event":"' .. event .. '","feed":"' .. feed ..
    '","activity":' .. activity
  if prev then msg = msg .. ',"prev":' .. prev end
  msg = msg .. '}'
  redis.call('LPUSH', K_LOG, msg)
  redis.call('LTRIM', K_LOG, 0, window - 1)
  redis.call('SPUBLISH', K_CH, msg)
end

-- Keep the feed within max_len activities and, when cutoff > 0, drop activities older than it.
-- Trimming is housekeeping, not a change: it takes no seq and sends no event.
local function trim(max_len, cutoff)
  local extra = redis.call('ZCARD', K_IDX) - max_len
  if extra > 0 then
    local ids = redis.call('ZRANGE', K_IDX, 0, extra - 1)
    for _, id in ipairs(ids) do
      drop(id, redis.call('HGET', K_ACTS, id) or '{}')
    end
  end
  if cutoff > 0 then
    local ids = redis.call('ZRANGEBYSCORE', K_IDX, '-inf', '(' .. cutoff, 'LIMIT', 0, 100)
    for _, id in ipairs(ids) do
      drop(id, redis.call('HGET', K_ACTS, id) or '{}')
    end
  end
end

-- The stored body: server-owned fields around the caller's encoded rest (which starts with '{'
-- and ends with '}').
local function assemble(id, seq, rest, created_at, version)
  return '{"id":' .. cjson.encode(id) .. ',"seq":' .. seq .. ',' .. string.sub(rest, 2, -2) ..
    ',"created_at":"' .. created_at .. '","version":' .. version .. '}'
end
