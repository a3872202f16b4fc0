-- submit: store a new pending job, or return the job an idempotency key (or this very call,
-- retried after a lost reply: the id is chosen by the caller) already created.
-- When nothing is queued ahead of it and a worker waits on its queue, the job is claimed for
-- that worker right here (leased and fenced as any claim) and handed over in its inbox: the
-- worker starts it without a claim of its own.
-- ARGV: 3 id, 4 idempotency key ('' for none), 5 priority key (fixed width), 6 queue,
--       7 token seed (random, per call), 8.. field/value pairs of the job's own fields
local id, idem, prio, queue, seed = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if idem ~= '' then
  local first = redis.call('GET', k_idem(idem))
  if first and redis.call('EXISTS', k_job(first)) == 1 then return read_job(first) end
end
local jk = k_job(id)
if redis.call('EXISTS', jk) == 1 then return read_job(id) end

local now_n = now_ms()
local now = num(now_n)
local seq = redis.call('INCR', K_SEQ)
local rank = prio .. string.format('%0' .. SEQ_DIGITS .. '.0f', seq) .. id
redis.call('HSET', jk, 'id', id, 'queue', queue, 'state', 'pending', 'seq', num(seq),
  'rank', rank, 'attempt', '0', 'stalls', '0', 'progress', '0', 'metrics', '{}',
  'history', '[]', 'cancel_requested', '0', 'created_at', now, 'updated_at', now)
if #ARGV >= 9 then redis.call('HSET', jk, unpack(ARGV, 8)) end
if idem ~= '' then
  redis.call('HSET', jk, 'idem', idem)
  redis.call('SET', k_idem(idem), id)
end
redis.call('ZADD', K_ALL, seq, id)
local worker, serial, lease
if redis.call('EXISTS', k_ready(queue)) == 0 then
  worker, serial, lease = take_waiter(queue, redis.call('HGET', jk, 'job_type'), true)
end
if worker then
  local job = read_job(id)  -- as submitted: the caller's answer
  local deadline = num(now_n + lease)
  local token, shows = lease_job(jk, worker, seed, deadline, now_n)
  redis.call('ZADD', k_state(shows), seq, id)
  redis.call('ZADD', K_LEASES, deadline, id)
  count(queue, shows, 1)
  deliver(worker, cjson.encode({serial, token, read_job(id)}), lease)
  flush_counts()
  return job
end
redis.call('ZADD', k_state('pending'), seq, id)
count(queue, 'pending', 1)
requeue(id, queue, rank)
flush_counts()
return read_job(id)
