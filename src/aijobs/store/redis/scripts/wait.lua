-- wait: a worker with room waits for work (store.wait_for_work). When work it can take is ready
-- already, a waiter that takes hand-overs (lease > 0) claims it at once, up to its room, and
-- gets the claims; one that does not (lease 0) is told to claim (returns 0): a job is pending
-- that it can take, with room for training or not (a claim skips the training jobs it has no
-- room for). Otherwise (returns 1) it waits on each of its queues, until the registration
-- expires, which the caller times to end just before its blocking pop of its inbox does: the
-- next job submitted to one of them is claimed for it and delivered there (submit.lua), or a
-- hint is, when work it can take is queued otherwise (a retry, a rescue, a claim that left work
-- behind).
-- ARGV: 3 worker id, 4 "<serial> <max training jobs> <lease ms>", 5 ttl ms,
--       6 room (jobs it may be handed), 7 token seed (random, per call), 8.. queues
local worker = ARGV[3]
-- What this wait may pop: what is in the inbox now, and what is delivered from now on. What
-- earlier waits popped reached the worker (a cancelled wait hands its pops back at once).
redis.call('DEL', k_handed(worker))
redis.call('COPY', k_inbox(worker), k_handed(worker))
local max_training, lease = string.match(ARGV[4], '^%S+ (%d+) (%d+)$')
local queues = {}
for i = 8, #ARGV do queues[#queues + 1] = ARGV[i] end
local best
for _, queue in ipairs(queues) do
  local head = best_rank(queue)
  if head and (not best or head < best) then best = head end
end
if best and lease ~= '0' then
  local claims = claim_jobs(worker, tonumber(lease), tonumber(ARGV[6]), ARGV[7],
    tonumber(max_training), queues)
  if #claims > 0 then return claims end
elseif best and (max_training ~= '0' or type_of(best) ~= 'training') then
  return 0
elseif best then  -- no training slot free: the inference jobs behind the training ones are ready
  for _, queue in ipairs(queues) do
    if inference_ready(queue) then return 0 end
  end
end
redis.call('SET', k_waiting(worker), ARGV[4], 'PX', ARGV[5])
local now = num(now_ms())
for _, queue in ipairs(queues) do redis.call('ZADD', k_waiters(queue), now, worker) end
return 1
