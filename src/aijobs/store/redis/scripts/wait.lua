-- wait: a worker with room waits for work (store.wait_for_work). When work it can take is ready
-- already it claims at once (returns 0): it has room for training and a job is pending, or
-- an inference job is pending (a claim skips the training jobs it has no room for). Otherwise
-- (returns 1) it waits on each of its queues, until the registration expires, which the caller
-- times to end just before its blocking pop of its inbox does: the next job submitted to one of
-- them is claimed for it and delivered there (submit.lua), or a hint is, when work it can take
-- is queued otherwise (a retry, a rescue, a claim that left work behind).
-- ARGV: 3 worker id, 4 "<serial> <max training jobs> <lease ms>", 5 ttl ms, 6.. queues
local worker = ARGV[3]
-- What this wait may pop: what is in the inbox now, and what is delivered from now on. What
-- earlier waits popped reached the worker (a cancelled wait hands its pops back at once).
redis.call('DEL', k_handed(worker))
redis.call('COPY', k_inbox(worker), k_handed(worker))
local max_training = string.match(ARGV[4], '^%S+ (%d+) ')
local best
for i = 6, #ARGV do
  local head = best_rank(ARGV[i])
  if head and (not best or head < best) then best = head end
end
if best and (max_training ~= '0' or type_of(best) ~= 'training') then return 0 end
if best then  -- no training slot free: the inference jobs behind the training ones are ready
  for i = 6, #ARGV do
    if inference_ready(ARGV[i]) then return 0 end
  end
end
redis.call('SET', k_waiting(worker), ARGV[4], 'PX', ARGV[5])
local now = num(now_ms())
for i = 6, #ARGV do redis.call('ZADD', k_waiters(ARGV[i]), now, worker) end
return 1
