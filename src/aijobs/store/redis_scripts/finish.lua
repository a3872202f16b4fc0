-- finish: running -> completed with the claim's token, registering the model in the same step.
-- Several jobs at once (a worker's group commit), each on its own: a stale one changes nothing.
-- ARGV, 8 per job from 3: id, token, result JSON, '1' when a log follows, log,
--       model id ('' for none), model JSON, model created_at ms
-- Returns {1 or 0, ...}: 0 for a job whose token was stale (and no change to it at all).
local now = now_ms()
local out = {}
for i = 3, #ARGV, 8 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'token', 'queue', 'seq', 'started_at', 'durkey')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 0
  else
    redis.call('HSET', jk, 'result', ARGV[i + 2], 'progress', '1', 'finished_at', num(now),
      'updated_at', num(now))
    redis.call('HDEL', jk, 'error', 'token', 'lease_until')
    if ARGV[i + 3] == '1' then redis.call('HSET', jk, 'log', ARGV[i + 4]) end
    redis.call('ZREM', K_LEASES, id)
    set_state(id, f[3], f[4], 'running', 'completed')
    if f[5] and f[6] then
      redis.call('LPUSH', k_dur(f[6]), num(now - tonumber(f[5])))
      redis.call('LTRIM', k_dur(f[6]), 0, DURATIONS_KEPT - 1)
    end
    if ARGV[i + 5] ~= '' then
      redis.call('HSET', K_MODELS, ARGV[i + 5], ARGV[i + 6])
      redis.call('ZADD', K_MODELS_BY_TIME, ARGV[i + 7], ARGV[i + 5])
    end
    finished(id, now)
    out[#out + 1] = 1
  end
end
return out
