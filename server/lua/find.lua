-- Look activities up without changing anything.
--
-- ARGV: mode, then
--   mode "refs": n, then n groups of 3: id ("" to use the next two), foreign_id, time
--                → one body (or false) per ref;
--   mode "foreign_id": foreign_id → every body with that foreign_id (any time).
if ARGV[1] == 'foreign_id' then
  local fid = ARGV[2]
  local prefix = fid .. '\0'
  local out = {}
  for _, member in ipairs(redis.call('ZRANGEBYLEX', K_FID, '[' .. prefix, '(' .. fid .. '\1')) do
    local rest = string.sub(member, #prefix + 1)
    local id = string.sub(rest, (string.find(rest, '\0', 1, true) or #rest) + 1)
    local body = redis.call('HGET', K_ACTS, id)
    if body then out[#out + 1] = body end
  end
  return out
end
local n, out = tonumber(ARGV[2]), {}
for i = 1, n do
  local b = 2 + (i - 1) * 3
  local id = ARGV[b + 1]
  if id == '' then id = fid_lookup(ARGV[b + 2], ARGV[b + 3]) end
  out[i] = (id and redis.call('HGET', K_ACTS, id)) or false
end
return out
