-- submit: store a new pending job, or return the job an idempotency key (or this very call,
-- retried after a lost reply: the id is chosen by the caller) already created.
-- ARGV: 3 id, 4 idempotency key ('' for none), 5 priority key (10 digits), 6 queue,
--       7.. field/value pairs of the job's own fields
local id, idem, prio, queue = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if idem ~= '' then
  local first = redis.call('GET', k_idem(idem))
  if first and redis.call('EXISTS', k_job(first)) == 1 then return read_job(first) end
end
local jk = k_job(id)
if redis.call('EXISTS', jk) == 1 then return read_job(id) end

local now = num(now_ms())
local seq = redis.call('INCR', K_SEQ)
local rank = prio .. string.format('%016.0f', seq) .. id
redis.call('HSET', jk, 'id', id, 'queue', queue, 'state', 'pending', 'seq', num(seq),
  'rank', rank, 'attempt', '0', 'stalls', '0', 'progress', '0', 'metrics', '{}',
  'history', '[]', 'cancel_requested', '0', 'created_at', now, 'updated_at', now)
if #ARGV >= 8 then redis.call('HSET', jk, unpack(ARGV, 7)) end
if idem ~= '' then
  redis.call('HSET', jk, 'idem', idem)
  redis.call('SET', k_idem(idem), id)
end
redis.call('ZADD', K_ALL, seq, id)
redis.call('ZADD', k_state('pending'), seq, id)
count(queue, 'pending', 1)
requeue(id, queue, rank)
flush_counts()
return read_job(id)
