-- create_key: record a new API key under a name no other key has.
-- ARGV: 3 name, 4 SHA-256 of the key (hex), 5 record (JSON).  Returns 1, or 0 when the name is
-- taken (nothing changed).
local name, digest = ARGV[3], ARGV[4]
if redis.call('HSETNX', P .. ':keys', name, digest) == 0 then return 0 end
redis.call('HSET', P .. ':key_hashes', digest, ARGV[5])
return 1
