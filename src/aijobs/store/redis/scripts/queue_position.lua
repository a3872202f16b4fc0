-- queue_position (read only): where a job that shows pending stands in its queue.
-- The ready set's order is the claims' order (priority desc, then FIFO), so the jobs ahead of
-- it are the ranks before its own: one ZLEXCOUNT, whether it is in the set or waits out a
-- back-off in delayed. The retried jobs ranked before it that wait out theirs are counted over
-- a bounded slice of delayed (DELAYED_SCAN, as every script's work is bounded).
-- ARGV: 3 job id
-- Returns {'missing'}, {'other'} (it does not show pending), {'claimed', worker} (a worker
-- holds it, not started yet) or {'pending', jobs ahead, retried jobs ahead, its own back-off
-- left in ms ('' for none)}.
local DELAYED_SCAN = 1000
local f = redis.call('HMGET', k_job(ARGV[3]), 'state', 'queue', 'rank', 'not_before', 'owner',
  'started_at')
if not f[1] then return {'missing'} end
if f[1] == 'running' and not f[6] then return {'claimed', f[5] or ''} end
if f[1] ~= 'pending' then return {'other'} end
local ahead = redis.call('ZLEXCOUNT', k_ready(f[2]), '-', '(' .. f[3])
local backing_off = 0
for _, other in ipairs(redis.call('ZRANGE', K_DELAYED, 0, DELAYED_SCAN - 1)) do
  local g = redis.call('HMGET', k_job(other), 'queue', 'rank')
  if g[1] == f[2] and g[2] and g[2] < f[3] then backing_off = backing_off + 1 end
end
local left = ''
if f[4] then left = num(math.max(0, tonumber(f[4]) - now_ms())) end
return {'pending', ahead, backing_off, left}
