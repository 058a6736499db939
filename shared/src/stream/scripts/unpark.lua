-- Moves parked entries back to the stream unless their campaign is still held.
-- KEYS: parked set, stream. ARGV: the held campaign ids. Returns how many moved.
local held = {}
for i = 1, #ARGV do held[ARGV[i]] = true end
local moved = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local campaign = string.match(member, '^[^\t]*\t([^\t]*)\t')
  if not held[campaign] then
    redis.call('XADD', KEYS[2], '*', 'e', member)
    redis.call('ZREM', KEYS[1], member)
    moved = moved + 1
  end
end
return moved
