-- revoke_key: forget an API key by name, so that the next request that sends it is refused.
-- ARGV: 3 name.  Returns 1, or 0 when no key has that name.
local digest = redis.call('HGET', P .. ':keys', ARGV[3])
if not digest then return 0 end
redis.call('HDEL', P .. ':keys', ARGV[3])
redis.call('HDEL', P .. ':key_hashes', digest)
return 1
