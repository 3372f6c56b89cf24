-- Add a follower to a feed (SPEC §12). KEYS: meta, followers, fo (all of the followed feed).
-- ARGV: follower feed, ms. The fan-out cursor starts at the feed's current seq when the feed had
-- no follower: changes made while nobody followed are never copied (the follow's own snapshot
-- copy brings the latest activities). Returns {added (1|0), seq}.
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if redis.call('ZCARD', KEYS[2]) == 0 or redis.call('HEXISTS', KEYS[3], 'cursor') == 0 then
  redis.call('HSET', KEYS[3], 'cursor', seq)
end
local added = redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
return {added, seq}
