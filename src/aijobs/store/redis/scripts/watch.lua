-- watch: a client waits for a job to end (store.wait_terminal). An active job is marked
-- watched, in the same step as the state check, so the script that ends it publishes its id on
-- P:done and no end slips between the check and the mark.
-- ARGV: 3 id, 4 ttl ms of the mark
-- Returns false for no such job, {state} for an active one, {state, job fields...} for an
-- ended one.
local id = ARGV[3]
local state = redis.call('HGET', k_job(id), 'state')
if not state then return false end
if state == 'pending' or state == 'running' then
  redis.call('SET', k_watch(id), '1', 'PX', ARGV[4])
  return {state}
end
local out = {state}
for _, value in ipairs(read_job(id)) do out[#out + 1] = value end
return out
