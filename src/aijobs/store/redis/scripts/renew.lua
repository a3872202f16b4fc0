-- renew: extend every lease a worker holds, in one round trip; progress lands only with a valid
-- token (fenced like every write). Answers per job: ok, cancel (the job was cancelled: kill the
-- child) or lost (rescued, finished or never ours: kill the child, write nothing).
-- ARGV: 3 worker id, 4 lease ms, then 5 values per job: id, token, fraction, metrics JSON,
--       history JSON ('' leaves a value unchanged)
local worker, lease = ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local deadline = num(now + lease)
local out = {}
for i = 5, #ARGV, 5 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'token')
  if f[2] == token and f[1] == 'running' then
    redis.call('HSET', jk, 'lease_until', deadline, 'updated_at', num(now))
    redis.call('ZADD', K_LEASES, 'XX', deadline, id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'progress', ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then redis.call('HSET', jk, 'metrics', ARGV[i + 3]) end
    if ARGV[i + 4] ~= '' then redis.call('HSET', jk, 'history', ARGV[i + 4]) end
    out[#out + 1] = 'ok'
  elseif f[2] == token and f[1] == 'cancelled' then
    out[#out + 1] = 'cancel'
  else
    out[#out + 1] = 'lost'
  end
end
redis.call('ZADD', K_WORKERS, 'XX', num(now), worker)  -- a heartbeat, if registered
return out
