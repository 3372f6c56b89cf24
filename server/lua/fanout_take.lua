-- Take (or renew) the fan-out lease of one followed feed and return its next changes to copy.
-- KEYS: meta, log, fo, folease (all of the followed feed: one slot). ARGV: token, lease_ms, max.
-- The changes come from the feed's own change log, written by the same script as the change:
-- there is no moment where a change is stored but its fan-out work is not.
-- Returns {'busy'} (another worker holds the feed), {'idle'} (nothing to copy; lease released),
-- {'gap', cursor, seq} (the log no longer reaches back to the cursor), or
-- {'events', cursor, last, event_1..event_n} oldest first.
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[1] then return {'busy'} end
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local cursor = tonumber(redis.call('HGET', KEYS[3], 'cursor') or '-1')
if cursor < 0 or seq < cursor then -- no cursor yet, or the feed's history was lost: start from now
  redis.call('HSET', KEYS[3], 'cursor', seq)
  cursor = seq
end
if seq == cursor then
  redis.call('DEL', KEYS[4])
  return {'idle'}
end
local behind = seq - cursor
if redis.call('LLEN', KEYS[2]) < behind then return {'gap', cursor, seq} end
local n = math.min(behind, tonumber(ARGV[3]))
local newest_first = redis.call('LRANGE', KEYS[2], behind - n, behind - 1)
local out = {'events', cursor, cursor + n}
for i = #newest_first, 1, -1 do out[#out + 1] = newest_first[i] end
return out
