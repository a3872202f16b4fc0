-- claim: the store's claim (_claim.lua's claim_jobs).
-- ARGV: 3 worker id, 4 lease ms, 5 limit (0: take nothing, only pass the wake-up on),
--       6 token seed (random, per call), 7 max training jobs (-1: no limit), 8.. queues
-- Returns {{token, job fields}, ...}.
local queues = {}
for i = 8, #ARGV do queues[#queues + 1] = ARGV[i] end
return claim_jobs(ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]),
  queues)
