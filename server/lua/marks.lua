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

if mode ~= 'counts' then
  local members = ids
  if all then members = redis.call('ZRANGE', K_IDX, 0, -1) end
  if #members > 0 then
    add_marks(K_SEEN, members)
    if mode == 'read' then add_marks(K_READ, members) end
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
