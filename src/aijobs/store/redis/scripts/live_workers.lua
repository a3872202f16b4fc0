-- live_workers (read only): workers seen within the TTL, by the server's clock.
-- ARGV: 3 ttl ms.  Returns {worker id, last seen ms, info JSON, ...}.
local now = now_ms()
local rows = redis.call('ZRANGEBYSCORE', K_WORKERS, num(now - tonumber(ARGV[3])), '+inf',
  'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  local info = redis.call('HGET', K_WORKER_INFO, rows[i])
  if info then
    out[#out + 1] = rows[i]
    out[#out + 1] = rows[i + 1]
    out[#out + 1] = info
  end
end
return out
