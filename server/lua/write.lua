-- Add activities to one feed, or overwrite the ones they match (SPEC §2 "Uniqueness").
--
-- ARGV: epoch_candidate, feed, max_len, window, cutoff_ms, n, then n groups of 9:
--   id, client_id ("1" when the client chose the id), foreign_id ("" if none), time, score (ms),
--   actor, may_override ("1" for feed admins), created_at, rest (encoded body without id/seq/
--   created_at/version).
-- An item matches an existing activity by its client-chosen id, or by (foreign_id, time); a match
-- is updated in place (same id, version + 1). The batch is all-or-nothing: every item is resolved
-- and checked (including matches between items of the same batch) before anything is written.
-- Returns {"ok", body...} or {"forbidden"|"conflict", item_index, message}.
local feed, max_len, window, cutoff = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n, STRIDE, BASE = tonumber(ARGV[6]), 9, 6

local pending_fid, pending_actor, plan = {}, {}, {}
for i = 1, n do
  local b = BASE + (i - 1) * STRIDE
  local id, client_id, fid, t, actor, override = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 6], ARGV[b + 7]
  local target = nil
  if client_id == '1' and (pending_actor[id] or redis.call('HEXISTS', K_ACTS, id) == 1) then
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
    if override ~= '1' and owner ~= actor then
      return {'forbidden', i, 'activity ' .. target .. ' belongs to another actor'}
    end
  end
  pending_actor[target or id] = actor
  plan[i] = target or false
end

local epoch = feed_epoch(ARGV[1])
local out = {'ok'}
for i = 1, n do
  local b = BASE + (i - 1) * STRIDE
  local id, fid, t, score, created_at, rest = ARGV[b + 1], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 8], ARGV[b + 9]
  local seq = redis.call('HINCRBY', K_META, 'seq', 1)
  local body, event, prev
  local target = plan[i]
  if target then
    local s = drop(target, redis.call('HGET', K_ACTS, target))
    id, event, prev = target, 'updated', visibility_json(s)
    body = assemble(id, seq, rest, s.created_at or created_at, s.version + 1)
  else
    event = 'created'
    body = assemble(id, seq, rest, created_at, 1)
  end
  redis.call('HSET', K_ACTS, id, body)
  redis.call('ZADD', K_IDX, score, id)
  if fid ~= '' then redis.call('ZADD', K_FID, 0, fid_member(fid, t, id)) end
  emit(seq, epoch, feed, event, body, prev, window)
  out[i + 1] = body
end
trim(max_len, cutoff)
return out
