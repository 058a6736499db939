-- Drops a lease its holder still has. KEYS: lease. ARGV: value.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
