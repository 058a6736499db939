-- Extends a lease its holder still has. KEYS: lease. ARGV: value, ttl ms. Returns 1 or 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
