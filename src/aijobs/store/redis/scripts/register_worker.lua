-- register_worker: insert or refresh a worker's record; forget workers long gone.
-- ARGV: 3 worker id, 4 info JSON, 5 forget after ms
local now = now_ms()
redis.call('ZADD', K_WORKERS, num(now), ARGV[3])
redis.call('HSET', K_WORKER_INFO, ARGV[3], ARGV[4])
local gone = redis.call('ZRANGEBYSCORE', K_WORKERS, '-inf', '(' .. num(now - tonumber(ARGV[5])),
  'LIMIT', 0, 20)
for _, worker in ipairs(gone) do
  redis.call('ZREM', K_WORKERS, worker)
  redis.call('HDEL', K_WORKER_INFO, worker)
end
return 1
