-- The feed's resume cursor, and (with a `since` cursor) the changes after it.
--
-- ARGV: epoch_candidate, since_seq ("" for none), since_epoch.
-- Returns {epoch, seq} without `since`; otherwise {epoch, seq, "ok", {event...}} with the missed
-- change events oldest first, or {epoch, seq, "lost"} when the epoch differs or the cursor is
-- older than the log. Creating the counter here gives an empty feed an epoch to resume from.
local epoch = feed_epoch(ARGV[1])
local seq = tonumber(redis.call('HGET', K_META, 'seq'))
if ARGV[2] == '' then return {epoch, seq} end
local since = tonumber(ARGV[2])
if ARGV[3] ~= epoch or since > seq or since < 0 then return {epoch, seq, 'lost'} end
local missed = seq - since
if missed == 0 then return {epoch, seq, 'ok', {}} end
if missed > redis.call('LLEN', K_LOG) then return {epoch, seq, 'lost'} end
local newest_first = redis.call('LRANGE', K_LOG, 0, missed - 1)
local events = {}
for i = #newest_first, 1, -1 do events[#events + 1] = newest_first[i] end
return {epoch, seq, 'ok', events}
