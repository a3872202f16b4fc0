-- rescue: jobs whose lease expired (server clock) go back to pending in their FIFO place, or to
-- failed once attempts (or stalls) are spent. Clearing token and owner fences the lost worker.
-- O(expired): a range of the leases index, never a scan. Safe to run from every process at
-- once: each job is rescued once per expiry, since the first pass removes it from the index.
-- A requeued job waits out the retry back-off (retry_at) in delayed.
-- ARGV: 3 max stalls ('' for no limit), 4 batch size, 5 back-off base ms, 6 its cap ms,
--       7 jitter seed
-- Returns {id, new state, id, new state, ...}.
local max_stalls = tonumber(ARGV[3])
local base, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
math.randomseed(tonumber(ARGV[7]))
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. num(now), 'LIMIT', 0,
  tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(due) do
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'lease_until', 'attempt', 'max_attempts', 'queue',
    'seq', 'rank')
  redis.call('ZREM', K_LEASES, id)
  if f[1] == 'running' and f[2] and tonumber(f[2]) >= now then
    redis.call('ZADD', K_LEASES, f[2], id)  -- (never expected: the index lagged the job)
  elseif f[1] == 'running' then
    local stalls = redis.call('HINCRBY', jk, 'stalls', 1)
    local attempt = tonumber(f[3])
    redis.call('HDEL', jk, 'token', 'owner', 'lease_until')
    redis.call('HSET', jk, 'updated_at', num(now))
    count_failure(f[5], 'lost')
    if attempt >= tonumber(f[4]) or (max_stalls and stalls > max_stalls) then
      redis.call('HSET', jk, 'finished_at', num(now),
        'error', 'worker lost: lease expired after ' .. attempt .. ' attempt(s)')
      set_state(id, f[5], f[6], 'failed')
      count_end(jk, 'failed', now)
      finished(id, now)
      out[#out + 1] = id
      out[#out + 1] = 'failed'
    else
      redis.call('HSET', jk, 'error',
        'worker lost: lease expired on attempt ' .. attempt .. ', requeued')
      back_to_pending(id, f[5], f[6], f[7], retry_at(now, attempt, base, cap))
      out[#out + 1] = id
      out[#out + 1] = 'pending'
    end
  end
end
flush_counts()
return out
