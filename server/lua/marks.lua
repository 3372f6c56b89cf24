-- Seen/read marks of a notification feed, and its unseen/unread counts.
--
-- KEYS: the feed's keys (keys.FeedKeys), then its seen set and read set.
-- ARGV: mode ("seen" | "read" | "counts"), all ("1" to mark every activity), then ids.
-- Returns {unseen, unread, seen flags..., read flags...} with one flag pair per id given; "seen"
-- and "read" (read implies seen) also publish the new counts on the feed's channel, so the
-- owner's other connections update their badges.
local K_SEEN, K_READ = KEYS[8], KEYS[9]
local mode, all = ARGV[1], ARGV[2] == '1'
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end

local function mark(key, members)
  for i = 1, #members, 500 do
    redis.call('SADD', key, unpack(members, i, math.min(i + 499, #members)))
  end
  -- Forget marks of activities that left the feed once they outnumber the feed itself.
  if redis.call('SCARD', key) > 2 * redis.call('ZCARD', K_IDX) + 100 then
    for _, id in ipairs(redis.call('SMEMBERS', key)) do
      if not redis.call('ZSCORE', K_IDX, id) then redis.call('SREM', key, id) end
    end
  end
end

if mode ~= 'counts' then
  local members = ids
  if all then members = redis.call('ZRANGE', K_IDX, 0, -1) end
  if #members > 0 then
    mark(K_SEEN, members)
    if mode == 'read' then mark(K_READ, members) end
  end
end

local total = redis.call('ZCARD', K_IDX)
local unseen = total - redis.call('ZINTERCARD', 2, K_IDX, K_SEEN)
local unread = total - redis.call('ZINTERCARD', 2, K_IDX, K_READ)
if mode ~= 'counts' then
  redis.call('SPUBLISH', K_CH, '{"counts":{"unseen":' .. unseen .. ',"unread":' .. unread .. '}}')
end
local out = {unseen, unread}
for _, id in ipairs(ids) do out[#out + 1] = redis.call('SISMEMBER', K_SEEN, id) end
for _, id in ipairs(ids) do out[#out + 1] = redis.call('SISMEMBER', K_READ, id) end
return out
