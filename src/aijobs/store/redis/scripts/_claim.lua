-- Claims (scripts/claim.lua, and scripts/wait.lua for a waiter whose work is ready): take up
-- to `limit` pending jobs of `queues`, best first (priority desc, then FIFO across all of them),
-- each with a lease and a fencing token: claim and lease record are one atomic step, so there
-- is no moment at which a job lives only in a worker's memory. At most `training_left` of them
-- are training jobs (-1: no limit): the claim skips the training jobs past that, which keep
-- their place for a worker with a free slot, so a worker whose training slots are full still
-- takes the inference jobs behind them. `lease` in ms, `seed` random per call (of the tokens).
-- Returns {{token, job fields}, ...}.
local function claim_jobs(worker, lease, limit, seed, training_left, queues)
  local trainings = limit
  if training_left >= 0 then trainings = math.min(limit, training_left) end
  -- Index changes are collected and written once for the whole batch.
  local taken, ranks, running, leases = {}, {}, {}, {}
  local candidates = {}
  promote_due(now_ms())  -- retried jobs whose back-off is over can be taken now
  for _, queue in ipairs(queues) do
    local found, stale = ready_jobs(queue, limit, trainings)
    for _, job in ipairs(found) do candidates[#candidates + 1] = {job[1], queue, job[2]} end
    ranks[queue] = stale
  end
  table.sort(candidates, function(a, b) return a[1] < b[1] end)

  local now = now_ms()
  local deadline = num(now + lease)
  local out = {}
  for i = 1, #candidates do
    if #out == limit then break end
    local rank, queue, job_type = candidates[i][1], candidates[i][2], candidates[i][3]
    local id = string.sub(rank, RANK_LEN + 1)
    local jk = k_job(id)
    local room = job_type ~= 'training' or training_left ~= 0
    if room and job_type == 'training' then training_left = training_left - 1 end
    if room then
      table.insert(ranks[queue], rank)
      local token, shows = lease_job(jk, worker, seed .. '.' .. i, deadline, now)
      if shows == 'running' then  -- else it is listed as pending until it starts
        count(queue, 'pending', -1)
        count(queue, 'running', 1)
        table.insert(taken, id)
        local seq = redis.call('HGET', jk, 'seq')
        move_owned(id, seq, 'pending', 'running')
        table.insert(running, seq)
        table.insert(running, id)
      end
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
  for _, queue in ipairs(queues) do wake(queue) end
  return out
end
