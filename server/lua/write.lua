-- Add activities to one feed, or overwrite the ones they match (SPEC §2 "Uniqueness").
--
-- ARGV: epoch_candidate, feed, max_len, window, cutoff_ms, n, then n pairs:
--   meta: a JSON array [id, client_id (true when the client chose the id), foreign_id ("" if
--         none), time, score (ms), actor, may_override (true for feed admins), created_at,
--         visibility line (see models.visibility)],
--   rest: the encoded body without id/seq/created_at/version.
-- KEYS: the feed's keys (keys.FeedKeys), then its followers and following sets (Keys.change_keys).
-- A follow copy carries a guard, meta[10]: the origin feed. It is written only while this feed
-- still follows the origin (its following set, same slot): a fan-out round that read the follower
-- list before an unfollow cannot put copies back after the unfollow removed them. A skipped item
-- takes no seq and leaves no trace.
-- An item matches an existing activity by its client-chosen id, or by (foreign_id, time); a match
-- is updated in place (same id, version + 1). The batch is all-or-nothing: every item is resolved
-- and checked (including matches between items of the same batch) before anything is written.
-- Returns {"ok", followed, body...} (followed: 1 when the feed has followers, so the caller queues
-- a fan-out job; a skipped copy's body is "") or {"forbidden"|"conflict", item_index, message}.
local feed, max_len, window, cutoff = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n, BASE = tonumber(ARGV[6]), 6
local K_FOLLOWERS, K_FOLLOWING = KEYS[8], KEYS[9]

local metas, pending_fid, pending_actor, plan, skipped, kept = {}, {}, {}, {}, {}, 0
for i = 1, n do
  local m = cjson.decode(ARGV[BASE + 2 * i - 1])
  metas[i] = m
  local guard = m[10]
  if guard and guard ~= '' and not redis.call('ZSCORE', K_FOLLOWING, guard) then
    skipped[i] = true
  else
    kept = kept + 1
    local id, client_id, fid, t, actor, override = m[1], m[2], m[3], m[4], m[6], m[7]
    local target = nil
    if client_id and (pending_actor[id] or redis.call('HEXISTS', K_ACTS, id) == 1) then
      target = id
    end
    if fid ~= '' then
      local hit = pending_fid[fid .. '\0' .. t] or fid_lookup(fid, t)
      if hit then
        if target and hit ~= target then
          return {'conflict', i, 'id ' .. id .. ' and foreign_id/time ' .. fid .. '/' .. t .. ' name different activities'}
        end
        target = hit
      end
      pending_fid[fid .. '\0' .. t] = target or id
    end
    if target then
      local owner = pending_actor[target]
      if owner == nil then owner = summary(redis.call('HGET', K_ACTS, target)).actor end
      if not override and owner ~= actor then
        return {'forbidden', i, 'activity ' .. target .. ' belongs to another actor'}
      end
    end
    pending_actor[target or id] = actor
    plan[i] = target or false
  end
end
local followed = redis.call('EXISTS', K_FOLLOWERS)
if kept == 0 then
  local out = {'ok', followed}
  for i = 1, n do out[i + 2] = '' end
  return out
end

-- Writes are gathered and sent as one HSET / ZADD per batch (a redis.call costs far more than
-- the command it runs). An update reads the stored state, so the writes gathered so far are
-- sent first: an activity created earlier in the same batch is then really there.
local bodies, scores, fids, lines = {}, {}, {}, {}
local function write_gathered()
  send_all('HSET', K_ACTS, bodies)
  send_all('HSET', K_VIS, lines)
  send_all('ZADD', K_IDX, scores)
  send_all('ZADD', K_FID, fids)
  bodies, scores, fids, lines = {}, {}, {}, {}
end

local epoch = feed_epoch(ARGV[1])
local seq = redis.call('HINCRBY', K_META, 'seq', kept) - kept
local out = {'ok', followed}
for i = 1, n do
  if skipped[i] then
    out[i + 2] = ''
  else
    local m = metas[i]
    local id, fid, t, score, created_at, rest = m[1], m[3], m[4], m[5], m[8], ARGV[BASE + 2 * i]
    seq = seq + 1
    local body, event, prev
    local target = plan[i]
    if target then
      write_gathered()
      local s = drop(target, redis.call('HGET', K_ACTS, target))
      id, event, prev = target, 'updated', visibility_json(s)
      body = assemble(id, seq, rest, s.created_at or created_at, s.version + 1)
    else
      event = 'created'
      body = assemble(id, seq, rest, created_at, 1)
    end
    bodies[#bodies + 1], bodies[#bodies + 2] = id, body
    lines[#lines + 1], lines[#lines + 2] = id, m[9]
    scores[#scores + 1], scores[#scores + 2] = score, id
    if fid ~= '' then fids[#fids + 1], fids[#fids + 2] = 0, fid_member(fid, t, id) end
    emit(seq, epoch, feed, event, body, prev)
    out[i + 2] = body
  end
end
write_gathered()
flush(window)
trim(max_len, cutoff)
return out
