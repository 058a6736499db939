-- Takes a free lease. KEYS: lease, fence. ARGV: owner, ttl ms, the lowest token Postgres has
-- seen for the number (-1: not read yet). Returns the fencing token, 0 when the lease is held,
-- or -1 when the counter is gone (never made, or Redis lost it) and Postgres must be asked:
-- tokens only ever rise.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local floor = tonumber(ARGV[3])
if floor < 0 and redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local fence = redis.call('INCR', KEYS[2])
if fence <= floor then
  fence = floor + 1
  redis.call('SET', KEYS[2], fence)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return fence
