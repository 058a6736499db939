-- Appends a campaign's entries to a number's stream, skipping those already appended, so that
-- fan-out can be repeated after a crash without queuing a message twice.
-- KEYS: stream, fanout hash. ARGV: campaign id; the highest id Postgres knows was appended (the
-- hash is never lower unless Redis lost data: then nothing is appended and -1 returned, so that
-- nothing appended now hides the loss); an id to raise the hash to (a repair: the lane's lost
-- entries are appended again and the hash made whole); then (message id, entry) pairs in
-- ascending message id order. Returns how many were appended.
local cursor = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if cursor < tonumber(ARGV[2]) then return -1 end
local added = 0
local highest = math.max(cursor, tonumber(ARGV[3]))
for i = 4, #ARGV, 2 do
  local id = tonumber(ARGV[i])
  if id > cursor then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    added = added + 1
    if id > highest then highest = id end
  end
end
if highest > cursor then redis.call('HSET', KEYS[2], ARGV[1], highest) end
return added
