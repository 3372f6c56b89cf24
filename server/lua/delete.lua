-- Delete activities of one feed by id. Items succeed or fail on their own.
--
-- ARGV: epoch_candidate, feed, window, n, then n groups of 4:
--   id, expected_version ("" for none), actor, may_override ("1" for feed admins).
-- Per item: {"ok", old_body} | {"not_found"} | {"stale", current_version} | {"forbidden"}.
-- After the n items: 1 if the feed has followers (KEYS[8], see Keys.change_keys), else 0.
-- Each success is a change: next seq, body and index entries removed, a "deleted" event carrying
-- the old body (subscribers receive only its id; the rest decides who may see the deletion).
local feed, window, n, STRIDE, BASE = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), 4, 4
local epoch = feed_epoch(ARGV[1])
local out = {}
for i = 1, n do
  local b = BASE + (i - 1) * STRIDE
  local id, expected, actor, override = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local old = redis.call('HGET', K_ACTS, id)
  if not old then
    out[i] = {'not_found'}
  else
    local s = summary(old)
    if expected ~= '' and tonumber(expected) ~= s.version then
      out[i] = {'stale', s.version}
    elseif override ~= '1' and s.actor ~= actor then
      out[i] = {'forbidden'}
    else
      local seq = redis.call('HINCRBY', K_META, 'seq', 1)
      drop(id, old)
      emit(seq, epoch, feed, 'deleted', old, nil)
      out[i] = {'ok', old}
    end
  end
end
flush(window)
out[#out + 1] = redis.call('EXISTS', KEYS[8]) -- the feed has followers: queue a fan-out job
return out
