-- Record that a followed feed's changes up to ARGV[2] reached every follower.
-- KEYS: meta, fo, folease. ARGV: token, new cursor, lease_ms.
-- Returns 'lost' (the lease expired and another worker took over: nothing recorded), 'more'
-- (newer changes arrived: the lease is renewed) or 'idle' (all copied: the lease is released).
-- Checking for newer changes and releasing in one script closes the race with a concurrent
-- write whose job a busy worker acknowledged without doing it.
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lost' end
redis.call('HSET', KEYS[2], 'cursor', ARGV[2])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if seq > tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return 'more'
end
redis.call('DEL', KEYS[3])
return 'idle'
