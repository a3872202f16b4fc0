-- finish: running -> completed with the claim's token, registering the model in the same step.
-- ARGV: 3 id, 4 token, 5 result JSON, 6 '1' when a log follows, 7 log,
--       8 model id ('' for none), 9 model JSON, 10 model created_at ms
-- Returns 1, or 0 (and no change at all) for a stale token.
local id, token = ARGV[3], ARGV[4]
local jk = k_job(id)
local f = redis.call('HMGET', jk, 'state', 'token', 'queue', 'seq', 'started_at', 'durkey')
if f[1] ~= 'running' or f[2] ~= token then return 0 end
local now = now_ms()
redis.call('HSET', jk, 'result', ARGV[5], 'progress', '1', 'finished_at', num(now),
  'updated_at', num(now))
redis.call('HDEL', jk, 'error', 'token', 'lease_until')
if ARGV[6] == '1' then redis.call('HSET', jk, 'log', ARGV[7]) end
redis.call('ZREM', K_LEASES, id)
set_state(id, f[3], f[4], 'running', 'completed')
if f[5] and f[6] then
  redis.call('LPUSH', k_dur(f[6]), num(now - tonumber(f[5])))
  redis.call('LTRIM', k_dur(f[6]), 0, DURATIONS_KEPT - 1)
end
if ARGV[8] ~= '' then
  redis.call('HSET', K_MODELS, ARGV[8], ARGV[9])
  redis.call('ZADD', K_MODELS_BY_TIME, ARGV[10], ARGV[8])
end
finished(id, now)
return 1
