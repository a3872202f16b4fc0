-- claim: take up to `limit` pending jobs of the listed queues, best first (priority desc, then
-- FIFO across all of them), each with a lease and a fencing token: claim and lease record are
-- one atomic step, so there is no moment at which a job lives only in a worker's memory.
-- At most `max_training` of them are training jobs: the claim stops at the first training job
-- past that (it never skips ahead of it), so a worker whose training slots are full can still
-- take the inference jobs before it.
-- ARGV: 3 worker id, 4 lease ms, 5 limit (0: take nothing, only pass the wake-up on),
--       6 token seed (random, per call), 7 max training jobs (-1: no limit), 8.. queues
-- Returns {{token, job fields}, ...}.
local worker, lease, limit, seed = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local training_left = tonumber(ARGV[7])
local candidates = {}
for i = 8, #ARGV do
  local queue = ARGV[i]
  for _, rank in ipairs(redis.call('ZRANGE', k_ready(queue), '-', '+', 'BYLEX', 'LIMIT', 0, limit)) do
    candidates[#candidates + 1] = {rank, queue}
  end
end
table.sort(candidates, function(a, b) return a[1] < b[1] end)

local now = now_ms()
local deadline = num(now + lease)
local out = {}
-- Index changes are collected and written once for the whole batch.
local taken, ranks, running, leases = {}, {}, {}, {}
for i = 1, math.min(limit, #candidates) do
  local rank, queue = candidates[i][1], candidates[i][2]
  local id = string.sub(rank, RANK_LEN + 1)
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'seq', 'job_type')
  if f[1] == 'pending' and f[3] == 'training' then
    if training_left == 0 then break end
    training_left = training_left - 1
  end
  ranks[queue] = ranks[queue] or {}
  table.insert(ranks[queue], rank)
  if f[1] == 'pending' then
    local token = lease_job(jk, worker, seed .. '.' .. i, deadline, now)
    count(queue, 'pending', -1)
    count(queue, 'running', 1)
    table.insert(taken, id)
    table.insert(running, f[2])
    table.insert(running, id)
    table.insert(leases, deadline)
    table.insert(leases, id)
    out[#out + 1] = {token, read_job(id)}
  end
end
for queue, list in pairs(ranks) do each_chunk('ZREM', k_ready(queue), list) end
each_chunk('ZREM', k_state('pending'), taken)
each_chunk('ZADD', k_state('running'), running)
each_chunk('ZADD', K_LEASES, leases)
flush_counts()
-- Chain the wake-up: another idle worker takes what this one left.
for i = 8, #ARGV do wake(ARGV[i]) end
return out
