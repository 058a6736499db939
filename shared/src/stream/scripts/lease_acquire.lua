-- Takes a free lease. KEYS: lease, fence. ARGV: owner, ttl ms. Returns the fencing token, or
-- 0 when the lease is held.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return fence
