-- Replace activities of one feed (PUT, PATCH, batch updates). Items succeed or fail on their own.
--
-- ARGV: epoch_candidate, feed, window, n, then n groups of 11:
--   id (the target; "" to find it by lookup_fid/lookup_time), lookup_fid, lookup_time,
--   expected_version ("" for none), actor, may_override ("1" for feed admins),
--   new_fid ("" for none), new_time, new_score, rest (encoded body without id/seq/created_at/version),
--   visibility line (see models.visibility).
-- Per item: {"ok", body} | {"not_found"} | {"stale", current_version} | {"forbidden"} | {"conflict", other_id}.
-- After the n items: 1 if the feed has followers (KEYS[8], see Keys.change_keys), else 0.
-- Each success is a change: next seq, new body (same id and created_at, version + 1), indexes moved
-- to the new time/foreign_id, an "updated" event carrying the previous actor and audience.
local feed, window, n, STRIDE, BASE = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), 11, 4
local epoch = feed_epoch(ARGV[1])
local out = {}
for i = 1, n do
  local b = BASE + (i - 1) * STRIDE
  local id, lfid, ltime, expected, actor, override = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local nfid, ntime, nscore, rest = ARGV[b + 7], ARGV[b + 8], ARGV[b + 9], ARGV[b + 10]
  if id == '' then id = fid_lookup(lfid, ltime) or '' end
  local old = id ~= '' and redis.call('HGET', K_ACTS, id)
  if not old then
    out[i] = {'not_found'}
  else
    local s = summary(old)
    local clash = nfid ~= '' and fid_lookup(nfid, ntime)
    if expected ~= '' and tonumber(expected) ~= s.version then
      out[i] = {'stale', s.version}
    elseif override ~= '1' and s.actor ~= actor then
      out[i] = {'forbidden'}
    elseif clash and clash ~= id then
      out[i] = {'conflict', clash}
    else
      local seq = redis.call('HINCRBY', K_META, 'seq', 1)
      drop(id, old)
      local body = assemble(id, seq, rest, s.created_at or '', s.version + 1)
      redis.call('HSET', K_ACTS, id, body)
      redis.call('HSET', K_VIS, id, ARGV[b + 11])
      redis.call('ZADD', K_IDX, nscore, id)
      if nfid ~= '' then redis.call('ZADD', K_FID, 0, fid_member(nfid, ntime, id)) end
      emit(seq, epoch, feed, 'updated', body, visibility_json(s))
      out[i] = {'ok', body}
    end
  end
end
flush(window)
out[#out + 1] = redis.call('EXISTS', KEYS[8]) -- the feed has followers: queue a fan-out job
return out
