-- Add, update or delete one reaction, as a change of its activity's feed (SPEC §12).
-- KEYS 1-7: the feed's keys (see _common.lua); 8: rx (bodies); 9: rxi:<target>; 10: rxi:<target>:<kind>;
-- 11: rxc:<target>; 12: rxu:<target>:<user>; 13: rxh (reaction id -> its number of children);
-- 14: rxs (activity id -> cached counts and latest reactions, lua/reaction_read.lua: dropped here).
-- <target> is the parent reaction, or the activity.
-- ARGV: op ("add"|"update"|"delete"), epoch_candidate, feed, window, activity_id, reaction_id,
--   body (add/update: the reaction JSON), kind, user, parent ("" for a reaction on the activity).
-- The change event carries the activity's id, actor and audience (who may see it) and the
-- reaction: {"event": "reaction.added"|"reaction.updated"|"reaction.deleted", "activity": {…, "reaction": {…}}}.
-- Returns {'ok', body} or {'missing'} (no such activity/reaction) or {'conflict'} (the id exists).
local K_RX, K_RXI, K_RXK, K_RXC, K_RXU, K_RXH, K_RXS = KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local op, feed, window, aid, rid = ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local body, kind, parent = ARGV[7], ARGV[8], ARGV[10] or ''

local stored = redis.call('HGET', K_RX, rid)
local name
if op == 'add' then
  if redis.call('HEXISTS', K_ACTS, aid) == 0 then return {'missing'} end
  if stored then return {'conflict'} end
  redis.call('HSET', K_RX, rid, body)
  redis.call('ZADD', K_RXI, 0, rid)
  redis.call('ZADD', K_RXK, 0, rid)
  redis.call('ZADD', K_RXU, 0, rid)
  redis.call('HINCRBY', K_RXC, kind, 1)
  if parent ~= '' then redis.call('HINCRBY', K_RXH, parent, 1) end
  name = 'reaction.added'
elseif op == 'update' then
  if not stored then return {'missing'} end
  redis.call('HSET', K_RX, rid, body)
  name = 'reaction.updated'
else
  if not stored then return {'missing'} end
  body = stored
  redis.call('HDEL', K_RX, rid)
  redis.call('ZREM', K_RXI, rid)
  redis.call('ZREM', K_RXK, rid)
  redis.call('ZREM', K_RXU, rid)
  if redis.call('HINCRBY', K_RXC, kind, -1) <= 0 then redis.call('HDEL', K_RXC, kind) end
  if parent ~= '' and redis.call('HINCRBY', K_RXH, parent, -1) <= 0 then redis.call('HDEL', K_RXH, parent) end
  name = 'reaction.deleted'
end

redis.call('HDEL', K_RXS, aid)
local s = summary(redis.call('HGET', K_ACTS, aid) or '{}')
local vis = visibility_json(s)
local activity = '{"id":' .. cjson.encode(aid) .. ',' .. string.sub(vis, 2, -2) .. ',"reaction":' .. body .. '}'
local epoch = feed_epoch(ARGV[2])
local seq = redis.call('HINCRBY', K_META, 'seq', 1)
emit(seq, epoch, feed, name, activity, nil)
flush(window)
return {'ok', body}
