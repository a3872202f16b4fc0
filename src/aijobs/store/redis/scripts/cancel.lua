-- cancel: pending or running -> cancelled at once. A running job keeps its token (its lease is
-- dropped) only so that the owner's next renew answers cancel; finish and fail need state
-- running, so nothing the worker writes afterwards lands.
-- ARGV: 3 id, 4 reason
-- Returns {'missing'}, {'terminal', state} or {'ok', job fields, log}.
local id = ARGV[3]
local jk = k_job(id)
local f = redis.call('HMGET', jk, 'state', 'queue', 'seq', 'rank')
if not f[1] then return {'missing'} end
if f[1] ~= 'pending' and f[1] ~= 'running' then return {'terminal', f[1]} end
local now = now_ms()
redis.call('HSET', jk, 'error', ARGV[4], 'finished_at', num(now), 'updated_at', num(now))
redis.call('HDEL', jk, 'lease_until')
if f[1] == 'running' then
  redis.call('HSET', jk, 'cancel_requested', '1')
  count_failure(f[2], 'cancelled')
  redis.call('ZREM', K_LEASES, id)
else
  redis.call('HSET', jk, 'cancel_requested', '0')
  redis.call('ZREM', k_ready(f[2]), f[4])
  redis.call('ZREM', K_DELAYED, id)
  redis.call('HDEL', jk, 'not_before')
end
set_state(id, f[2], f[3], 'cancelled')
count_end(jk, 'cancelled', now)
local job = read_job(id)
local log = redis.call('HGET', jk, 'log')
finished(id, now)
flush_counts()
return {'ok', job, log}
