-- One chunk of a history page, newest first.
--
-- ARGV: lt, lt_inclusive, lt_score, gt, gt_inclusive, gt_score, direction ("desc"|"asc"), count.
-- Bounds are activity ids ("" for none). A bound that is no longer in the feed is placed by its
-- score (the time inside a ULID, "" if the id is not a ULID). Ranks count newest first; "desc"
-- returns the newest `count` activities inside the bounds, "asc" the oldest `count` (still
-- newest first). Returns {"ok", body...} or {"bad", message}.

-- How many activities sort above `id` (its rank, whether or not it is still in the feed).
local function above(id, score)
  local rank = redis.call('ZREVRANK', K_IDX, id)
  if rank then return rank, true end
  if score == '' then return nil, false end
  local n = redis.call('ZCOUNT', K_IDX, '(' .. score, '+inf')
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_IDX, score, score)) do
    if m > id then n = n + 1 end
  end
  return n, false
end

local lo, hi = 0, redis.call('ZCARD', K_IDX)
if ARGV[1] ~= '' then
  local r, present = above(ARGV[1], ARGV[3])
  if r == nil then return {'bad', 'id_lt/id_lte: unknown activity id'} end
  if present and ARGV[2] ~= '1' then r = r + 1 end
  lo = r
end
if ARGV[4] ~= '' then
  local r, present = above(ARGV[4], ARGV[6])
  if r == nil then return {'bad', 'id_gt/id_gte: unknown activity id'} end
  if present and ARGV[5] == '1' then r = r + 1 end
  if r < hi then hi = r end
end
local count = tonumber(ARGV[8])
if lo >= hi then return {'ok'} end
local start, stop
if ARGV[7] == 'asc' then
  start, stop = math.max(lo, hi - count), hi - 1
else
  start, stop = lo, math.min(lo + count, hi) - 1
end
local ids = redis.call('ZREVRANGE', K_IDX, start, stop)
local out = {'ok'}
if #ids > 0 then
  for _, body in ipairs(redis.call('HMGET', K_ACTS, unpack(ids))) do
    if body then out[#out + 1] = body end
  end
end
return out
