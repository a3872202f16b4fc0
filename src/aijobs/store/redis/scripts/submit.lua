-- submit: store a new pending job, or return the job an idempotency key (or this very call,
-- retried after a lost reply: the id is chosen by the caller) already created.
-- When nothing is queued ahead of it and a worker waits on its queue, the job is claimed for
-- that worker right here (leased and fenced as any claim) and handed over in its inbox: the
-- worker starts it without a claim of its own.
-- A new job past a limit is refused here, in the same atomic step as the insert: the reply is
-- {'limit', name, value} instead of the job. So is one whose model must exist and does not
-- (deleted since the caller read its record): {'no_model'}.
-- A job stored by this call is not read back: the reply is {'new', created_at ms}, and the
-- caller, which sent every field, builds the job (codec.submitted_job). The full job is the
-- reply only when the job already existed (its idempotency key, or this call retried).
-- ARGV: 3 id, 4 idempotency key ('' for none), 5 priority key (fixed width), 6 queue,
--       7 token seed (random, per call), 8 '1' if the job's model_id must name a stored
--       model, 9 .. 8 + N_LIMITS the limits (PendingLimits' fields in order, '' for none),
--       then field/value pairs of the job's own fields
local id, idem, prio, queue, seed = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local model_required = ARGV[8] == '1'
local max_per_queue, max_per_principal = tonumber(ARGV[9]), tonumber(ARGV[10])
local first_field = 9 + N_LIMITS
local given = {}  -- the caller's fields, by name
for i = first_field, #ARGV - 1, 2 do given[ARGV[i]] = ARGV[i + 1] end
if idem ~= '' then
  local first = redis.call('GET', k_idem(idem))
  if first and redis.call('EXISTS', k_job(first)) == 1 then return read_job(first) end
end
local jk = k_job(id)
if redis.call('EXISTS', jk) == 1 then return read_job(id) end
if model_required and not (given.model_id
    and redis.call('HEXISTS', K_MODELS, given.model_id) == 1) then
  return {'no_model'}
end
if max_per_queue and tonumber(redis.call('HGET', K_COUNTS, 'pending:' .. queue) or '0')
    >= max_per_queue then
  return {'limit', 'per_queue', num(max_per_queue)}
end
if max_per_principal and given.principal
    and redis.call('ZCARD', k_owned('pending', given.principal)) >= max_per_principal then
  return {'limit', 'per_principal', num(max_per_principal)}
end

local now_n = now_ms()
local now = num(now_n)
local seq = redis.call('INCR', K_SEQ)
local rank = prio .. string.format('%0' .. SEQ_DIGITS .. '.0f', seq) .. id
-- The whole job in one write, the caller's fields after ours; what the script needs of the
-- caller's fields it takes from its arguments, not from a read of what it just wrote.
local set = {'id', id, 'queue', queue, 'state', 'pending', 'seq', num(seq),
  'rank', rank, 'attempt', '0', 'stalls', '0', 'progress', '0', 'metrics', '{}',
  'history', '[]', 'cancel_requested', '0', 'created_at', now, 'updated_at', now}
for i = first_field, #ARGV - 1, 2 do
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 1]
end
if idem ~= '' then
  set[#set + 1] = 'idem'
  set[#set + 1] = idem
  redis.call('SET', k_idem(idem), id)
end
redis.call('HSET', jk, unpack(set))
redis.call('ZADD', K_ALL, seq, id)
local job_type, model_id, principal = given.job_type, given.model_id, given.principal or false
stat('submitted', job_type, '', queue, 1)
if job_type == 'inference' and model_id then  -- its model's last use, for retention
  redis.call('ZADD', K_MODELS_USED, 'XX', 'GT', now, model_id)
end
local worker, serial, lease
if redis.call('EXISTS', k_ready(queue)) == 0 then
  worker, serial, lease = take_waiter(queue, job_type, true)
end
if worker then
  local deadline = num(now_n + lease)
  local token, shows = lease_job(jk, worker, seed, deadline, now_n)
  redis.call('ZADD', k_state(shows), seq, id)
  move_owned(id, seq, nil, shows, principal)
  redis.call('ZADD', K_LEASES, deadline, id)
  count(queue, shows, 1)
  deliver(worker, cjson.encode({serial, token, read_job(id)}), lease)
  flush_counts()
  return {'new', now}  -- as submitted (pending): the caller's answer
end
redis.call('ZADD', k_state('pending'), seq, id)
move_owned(id, seq, nil, 'pending', principal)
count(queue, 'pending', 1)
requeue(id, queue, rank)
flush_counts()
return {'new', now}
