-- Sets a scope's hold to end at ARGV[1] (Unix ms; the key expires then, ARGV[2] ms from now)
-- unless it already ends later. KEYS: the scope's hold.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
