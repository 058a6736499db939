-- Appends a campaign's entries to a number's stream, skipping those already appended, so that
-- fan-out can be repeated after a crash without queuing a message twice.
-- KEYS: stream, fanout hash. ARGV: campaign id, then (message id, entry) pairs in ascending
-- message id order. Returns how many were appended.
local cursor = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local added = 0
local highest = cursor
for i = 2, #ARGV, 2 do
  local id = tonumber(ARGV[i])
  if id > cursor then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    added = added + 1
    if id > highest then highest = id end
  end
end
if highest > cursor then redis.call('HSET', KEYS[2], ARGV[1], highest) end
return added
