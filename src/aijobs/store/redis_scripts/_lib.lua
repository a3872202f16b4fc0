-- Shared prelude of every aijobs script (store/redis.py prepends it to each script body).
--
-- KEYS[1] is the deployment's hash-tagged prefix, e.g. "{aijobs}". Every key a script touches
-- starts with it, so all of a deployment's keys share one hash slot: each transition updates
-- the job, its claim index, the per-state listing indexes and the counts in one atomic script,
-- which Redis Cluster allows only within one slot. (Several deployments, with several
-- prefixes, spread over a cluster's slots.)
-- ARGV[1], ARGV[2]: retention of terminal jobs (count, milliseconds; 0 means unlimited).
-- A script's own arguments start at ARGV[3].
--
-- Keys (P = KEYS[1]):
--   P:job:<id>        HASH  the job (see FIELDS), plus seq, rank, token, lease_until, stalls, idem,
--                           durkey, log
--   P:seq             STRING job sequence number: FIFO order and newest-first listing
--   P:all             ZSET  every stored job, score seq (GET /jobs without a filter, total)
--   P:state:<state>   ZSET  the jobs in that state, score seq (GET /jobs?status=..., total)
--   P:counts          HASH  "<state>:<queue>" -> number of jobs (queue depths)
--   P:ready:<queue>   ZSET  pending jobs, all score 0, member rank = priority key .. seq .. id:
--                           lexicographic order is priority desc, then FIFO (exact, any size)
--   P:leases          ZSET  running jobs, score lease_until (ms, server clock): the rescue index
--   P:wake:<queue>    ZSET  member "0" while work may be ready; idle workers BZPOPMIN it
--   P:finished        ZSET  terminal jobs, score finished_at: the retention index
--   P:idem:<key>      STRING the job id an Idempotency-Key names
--   P:dur:<durkey>    LIST  latest run times (ms) of completed jobs of one kind, newest first
--   P:workers         ZSET  worker id -> last seen (ms);  P:worker_info HASH worker id -> JSON
--   P:models          HASH  model id -> JSON;            P:models_by_time ZSET model id -> ms
--   P:watch:<id>      STRING set (with a TTL) while a client waits for the job to end
--   P:done            CHANNEL a watched job's fields (JSON array) are published here when it ends
--
-- Invariant (checked by store/redis_check.py): a pending job is in exactly ready:<its queue>,
-- a running job in exactly leases, a terminal job in neither but in finished; every job is in
-- all and in exactly the state:<s> of its state; counts equal the state indexes per queue.

local P = KEYS[1]
local RETAIN_N = tonumber(ARGV[1])
local RETAIN_MS = tonumber(ARGV[2])
local TRIM_BATCH = 20       -- terminal jobs deleted per transition at most (amortised trimming)
local DURATIONS_KEPT = 100  -- run times kept per kind of job, for estimates
local RANK_LEN = 26         -- 10 digits of priority key + 16 digits of seq, then the id

local FIELDS = {
  'id', 'job_type', 'queue', 'state', 'payload', 'model_type', 'model_id', 'description',
  'priority', 'attempt', 'max_attempts', 'timeout_seconds', 'progress', 'metrics', 'history',
  'result', 'error', 'owner', 'cancel_requested', 'created_at', 'updated_at', 'started_at',
  'finished_at',
}

local K_SEQ = P .. ':seq'
local K_ALL = P .. ':all'
local K_COUNTS = P .. ':counts'
local K_LEASES = P .. ':leases'
local K_FINISHED = P .. ':finished'
local K_WORKERS = P .. ':workers'
local K_WORKER_INFO = P .. ':worker_info'
local K_MODELS = P .. ':models'
local K_MODELS_BY_TIME = P .. ':models_by_time'
local K_DONE = P .. ':done'

local function k_job(id) return P .. ':job:' .. id end
local function k_state(state) return P .. ':state:' .. state end
local function k_ready(queue) return P .. ':ready:' .. queue end
local function k_wake(queue) return P .. ':wake:' .. queue end
local function k_idem(key) return P .. ':idem:' .. key end
local function k_dur(durkey) return P .. ':dur:' .. durkey end
local function k_watch(id) return P .. ':watch:' .. id end

-- Integers as exact decimal strings (Lua's tostring keeps only 14 significant digits).
local function num(x) return string.format('%.0f', x) end

-- The server's clock, in ms: every lease and timestamp comes from it, never a client's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- redis.call(command, key, values...) in chunks (Lua's unpack has a limit); nothing when empty.
-- ZADD's score/member pairs must come in pairs, so the chunk size is even.
local function each_chunk(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

local function read_job(id) return redis.call('HMGET', k_job(id), unpack(FIELDS)) end

-- Count changes are summed here and written once per script by flush_counts(), which every
-- script that changes a state calls before it returns (a batch moves many jobs at once).
local count_deltas = {}
local function count(queue, state, delta)
  local field = state .. ':' .. queue
  count_deltas[field] = (count_deltas[field] or 0) + delta
end
local function flush_counts()
  for field, delta in pairs(count_deltas) do
    if delta ~= 0 then redis.call('HINCRBY', K_COUNTS, field, delta) end
  end
  count_deltas = {}
end

-- Set a job's state, moving it between the listing indexes and the counts.
local function set_state(id, queue, seq, from, to)
  redis.call('ZREM', k_state(from), id)
  redis.call('ZADD', k_state(to), seq, id)
  count(queue, from, -1)
  count(queue, to, 1)
  redis.call('HSET', k_job(id), 'state', to)
end

local function wake(queue) redis.call('ZADD', k_wake(queue), 0, '0') end

-- Make a pending job claimable again, in its original FIFO place.
local function requeue(id, queue, rank)
  redis.call('ZADD', k_ready(queue), 0, rank)
  wake(queue)
end

-- Forget a terminal job entirely (retention).
local function delete_job(id)
  redis.call('ZREM', K_FINISHED, id)
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'queue', 'state', 'idem')
  if not f[1] then return end
  redis.call('ZREM', K_ALL, id)
  redis.call('ZREM', k_state(f[2]), id)
  count(f[1], f[2], -1)
  if f[3] and redis.call('GET', k_idem(f[3])) == id then redis.call('DEL', k_idem(f[3])) end
  redis.call('DEL', jk)
end

-- A job just ended: tell its waiters. Only watched jobs are announced, with their fields, so
-- that a waiter needs no further read.
local function announce(id)
  if redis.call('DEL', k_watch(id)) == 1 then
    redis.call('PUBLISH', K_DONE, cjson.encode(read_job(id)))
  end
end

-- Delete up to `budget` of the oldest terminal jobs past the retention limits: a bounded
-- amount of work per transition, so trimming keeps up without ever scanning.
local function trim_finished(now, budget)
  if RETAIN_MS > 0 then
    local old = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', num(now - RETAIN_MS),
      'LIMIT', 0, budget)
    for _, old_id in ipairs(old) do delete_job(old_id) end
    budget = budget - #old
  end
  if RETAIN_N > 0 and budget > 0 then
    local excess = redis.call('ZCARD', K_FINISHED) - RETAIN_N
    if excess > 0 then
      for _, old_id in ipairs(redis.call('ZRANGE', K_FINISHED, 0, math.min(excess, budget) - 1)) do
        delete_job(old_id)
      end
    end
  end
end

-- A job just became terminal: index it for retention, trim, announce.
local function finished(id, now)
  redis.call('ZADD', K_FINISHED, now, id)
  trim_finished(now, TRIM_BATCH)
  announce(id)
end

-- ---------------------------------------------------------------------------------------------
