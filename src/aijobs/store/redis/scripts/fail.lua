-- fail: running -> failed, or -> pending again (its FIFO place kept) when retry is asked for
-- and attempts are left, or when the attempt is not to be counted (it is undone). The error is
-- kept either way, as the last error.
-- A counted retry waits out the back-off (retry_at) in delayed; one not counted is claimable
-- at once.
-- ARGV: 3 id, 4 token, 5 error, 6 retry '1'/'0', 7 '1' when a log follows, 8 log,
--       9 count the attempt '1'/'0', 10 back-off base ms, 11 its cap ms, 12 jitter seed,
--       13 the failure's reason (aijobs.store.stats.FailureReason), counted with the attempt
-- Returns 1, or 0 (and no change at all) for a stale token.
local id, token = ARGV[3], ARGV[4]
local jk = k_job(id)
local f = redis.call('HMGET', jk, 'state', 'token', 'queue', 'seq', 'attempt', 'max_attempts',
  'rank')
if f[1] ~= 'running' or f[2] ~= token then return 0 end
local now = now_ms()
redis.call('HSET', jk, 'error', ARGV[5], 'updated_at', num(now))
redis.call('HDEL', jk, 'token', 'lease_until')
if ARGV[7] == '1' then redis.call('HSET', jk, 'log', ARGV[8]) end
redis.call('ZREM', K_LEASES, id)
local counted = ARGV[9] ~= '0'
if counted then count_failure(f[3], ARGV[13]) end
if ARGV[6] == '1' and (not counted or tonumber(f[5]) < tonumber(f[6])) then
  local not_before = nil
  if counted then
    math.randomseed(tonumber(ARGV[12]))
    not_before = retry_at(now, tonumber(f[5]), tonumber(ARGV[10]), tonumber(ARGV[11]))
  else
    redis.call('HINCRBY', jk, 'attempt', -1)
  end
  back_to_pending(id, f[3], f[4], f[7], not_before)
else
  redis.call('HSET', jk, 'finished_at', num(now))
  set_state(id, f[3], f[4], 'failed')
  count_end(jk, 'failed', now)
  finished(id, now)
end
flush_counts()
return 1
