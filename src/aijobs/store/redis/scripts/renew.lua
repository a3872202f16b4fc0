-- renew: extend every lease a worker holds, in one round trip; progress lands only with a valid
-- token (fenced like every write). Answers per job: ok, cancel (the job was cancelled: kill the
-- child) or lost (rescued, finished or never ours: kill the child, write nothing).
-- ARGV: 3 worker id, 4 lease ms, then 6 values per job: id, token, fraction, metrics JSON,
--       history JSON ('' leaves a value unchanged), '1' when the job has started (a claimed
--       inference job starts when its worker's child gets to it: it shows running from then)
local worker, lease = ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local deadline = num(now + lease)
local out = {}
for i = 5, #ARGV, 6 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'token')
  if f[2] == token and f[1] == 'running' then
    redis.call('HSET', jk, 'lease_until', deadline, 'updated_at', num(now))
    redis.call('ZADD', K_LEASES, 'XX', deadline, id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'progress', ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then redis.call('HSET', jk, 'metrics', ARGV[i + 3]) end
    if ARGV[i + 4] ~= '' then redis.call('HSET', jk, 'history', ARGV[i + 4]) end
    if ARGV[i + 5] == '1' and shown(jk) == 'pending' then
      redis.call('HSET', jk, 'started_at', num(now))
      count_start(jk, now)
      local q = redis.call('HMGET', jk, 'queue', 'seq')
      relist(id, q[1], q[2], 'pending')
    end
    out[#out + 1] = 'ok'
  elseif f[2] == token and f[1] == 'cancelled' then
    out[#out + 1] = 'cancel'
  else
    out[#out + 1] = 'lost'
  end
end
redis.call('ZADD', K_WORKERS, 'XX', num(now), worker)  -- a heartbeat, if registered
flush_counts()
return out
