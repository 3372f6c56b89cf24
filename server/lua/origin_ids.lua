-- Ids of the follow copies in a feed that came from one origin feed (unfollow's cleanup).
-- KEYS: acts. ARGV: the exact JSON text '"origin":"<feed>"' (feed names never need escaping).
local out, cursor = {}, '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 500)
  cursor = page[1]
  local kv = page[2]
  for i = 1, #kv, 2 do
    local body = kv[i + 1]
    if string.find(body, ARGV[1], 1, true) and string.find(body, '"via":"follow"', 1, true) then
      out[#out + 1] = kv[i]
    end
  end
until cursor == '0'
return out
