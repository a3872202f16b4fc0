-- finish: running -> completed with the claim's token, registering the model in the same step.
-- Several jobs at once (a worker's group commit), each on its own: a stale one changes nothing.
-- ARGV, 8 per job from 3: id, token, result JSON, '1' when a log follows, log,
--       model id ('' for none), model JSON, model created_at ms
-- Returns {1 or 0, ...}: 0 for a job whose token was stale (and no change to it at all).
local now = now_ms()
local out = {}
local durations = {}  -- durkey -> run times (ms), oldest first
-- Index changes are collected and written once for the whole batch.
local ended, completed, finished_at = {}, {}, {}
for i = 3, #ARGV, 8 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'token', 'queue', 'seq', 'started_at', 'durkey',
    'job_type', 'attempt', 'created_at', 'principal')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 0
  else
    -- A job whose start no renewal reported yet (it shows pending) ran between two of them.
    local started = f[5] or num(now)
    -- count_start's and count_end's counts, from the fields read above
    if not f[5] and f[8] == '1' then observe('wait', '', f[3], now - tonumber(f[9])) end
    local shown = f[5] and 'running' or 'pending'
    local set = {'state', 'completed', 'result', ARGV[i + 2], 'progress', '1',
      'finished_at', num(now), 'updated_at', num(now), 'started_at', started}
    if ARGV[i + 3] == '1' then
      set[#set + 1] = 'log'
      set[#set + 1] = ARGV[i + 4]
    end
    redis.call('HSET', jk, unpack(set))
    redis.call('HDEL', jk, 'error', 'token', 'lease_until')
    stat('finished', f[7], 'completed', f[3], 1)
    observe('run', f[7], f[3], now - tonumber(started))
    count(f[3], shown, -1)
    count(f[3], 'completed', 1)
    if shown == 'pending' then redis.call('ZREM', k_state('pending'), id) end
    move_owned(id, f[4], shown, 'completed', f[10])
    table.insert(ended, id)
    table.insert(completed, f[4])
    table.insert(completed, id)
    table.insert(finished_at, num(now))
    table.insert(finished_at, id)
    if f[6] then
      durations[f[6]] = durations[f[6]] or {}
      table.insert(durations[f[6]], num(now - tonumber(started)))
    end
    if ARGV[i + 5] ~= '' then
      redis.call('HSET', K_MODELS, ARGV[i + 5], ARGV[i + 6])
      redis.call('ZADD', K_MODELS_BY_TIME, ARGV[i + 7], ARGV[i + 5])
      redis.call('ZADD', K_MODELS_USED, ARGV[i + 7], ARGV[i + 5])
    end
    announce(id)
    out[#out + 1] = 1
  end
end
each_chunk('ZREM', K_LEASES, ended)
each_chunk('ZREM', k_state('running'), ended)
each_chunk('ZADD', k_state('completed'), completed)
each_chunk('ZADD', K_FINISHED, finished_at)
for durkey, values in pairs(durations) do
  redis.call('LPUSH', k_dur(durkey), unpack(values))
  redis.call('LTRIM', k_dur(durkey), 0, DURATIONS_KEPT - 1)
end
trim_finished(now, TRIM_BATCH * #out)
flush_counts()
return out
