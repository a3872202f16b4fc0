-- unregister_worker: a worker stops. Its record goes, and so does its waiting (end_wait).
-- ARGV: 3 worker id
-- Returns the ids of the jobs handed back.
redis.call('ZREM', K_WORKERS, ARGV[3])
redis.call('HDEL', K_WORKER_INFO, ARGV[3])
local out = end_wait(ARGV[3], false)
flush_counts()
return out
