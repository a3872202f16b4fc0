-- The shared part of the aijobs function library (store/redis/codec.py builds the library: a
-- header that defines FIELDS, SEQ_DIGITS and RANK_LEN from the Python side, this, _claim.lua,
-- then each script's body as one function). Redis runs it once, when the library is loaded,
-- not at every call as it would a script's prelude; each function starts with begin().
--
-- KEYS[1] is the deployment's hash-tagged prefix, e.g. "{aijobs}". Every key a script touches
-- starts with it, so all of a deployment's keys share one hash slot: each transition updates
-- the job, its claim index, the per-state listing indexes and the counts in one atomic script,
-- which Redis Cluster allows only within one slot. (Several deployments, with several
-- prefixes, spread over a cluster's slots.)
-- ARGV[1], ARGV[2]: retention of terminal jobs (count, milliseconds; 0 means unlimited).
-- A function's own arguments start at ARGV[3].
--
-- Keys (P = KEYS[1]):
--   P:job:<id>        HASH  the job (see FIELDS), plus seq, rank, token, lease_until, stalls, idem,
--                           durkey, log
--   P:seq             STRING job sequence number: FIFO order and newest-first listing
--   P:all             ZSET  every stored job, score seq (GET /jobs without a filter, total)
--   P:state:<state>   ZSET  the jobs that show that state, score seq (GET /jobs?status=...,
--                           total): a running job not started yet shows pending (shown())
--   P:counts          HASH  "<shown state>:<queue>" -> number of jobs (queue depths)
--   P:ready:<queue>   ZSET  pending jobs, all score 0, member rank = priority key .. seq .. id:
--                           lexicographic order is priority desc, then FIFO (exact, any size)
--   P:leases          ZSET  running jobs, score lease_until (ms, server clock): the rescue index
--   P:delayed         ZSET  pending jobs waiting out a retry's back-off, score not_before (ms,
--                           server clock): out of their ready set until a claim moves them back
--   P:waiters:<queue> ZSET  idle workers waiting on the queue, score: when they began
--   P:waiting:<worker> STRING "<serial> <max training jobs> <lease ms>" while the worker waits
--                           (expires by itself just before its blocking pop ends)
--   P:inbox:<worker>  LIST  what a waiting worker is handed: a claim (JSON) or "hint"
--   P:handed:<worker> LIST  what was handed to it since its wait began, popped or not: the
--                           claims to hand back when that wait is cancelled (same expiry)
--   P:finished        ZSET  terminal jobs, score finished_at: the retention index
--   P:idem:<key>      STRING the job id an Idempotency-Key names
--   P:dur:<durkey>    LIST  latest run times (ms) of completed jobs of one kind, newest first
--   P:workers         ZSET  worker id -> last seen (ms);  P:worker_info HASH worker id -> JSON
--   P:models          HASH  model id -> JSON;            P:models_by_time ZSET model id -> ms
--   P:models_used     ZSET  model id -> when last trained or named by a submitted inference
--                           job (ms): the retention index (forget_unused_models)
--   P:owned:all:<principal>     ZSET  the jobs a principal submitted, score seq (GET /jobs for a
--   P:owned:<state>:<principal> ZSET  non-admin: its own jobs, filtered in the index, not after
--                               paging); jobs without a principal (auth off) are in neither
--   P:keys            HASH  API key name -> SHA-256 of the key (hex)
--   P:key_hashes      HASH  SHA-256 of a key -> its record (JSON): the lookup on every request
--   P:watch:<id>      STRING set (with a TTL) while a client waits for the job to end
--   P:stats           HASH  "<metric>|<job type>|<label>|<queue>" -> integer: the counters and
--                           histograms of GET /metrics (aijobs.store.stats), kept by the scripts
--                           that make each transition (count_start, count_end, count_failure)
--   P:done            CHANNEL a watched job's fields (JSON array) are published here when it ends
--
-- Invariant (checked by store/redis/check.py): a pending job is in exactly ready:<its queue>
-- or (with its not_before) in delayed,
-- a running job in exactly leases, a terminal job in neither but in finished; every job is in
-- all and in exactly the state:<s> of the state it shows; counts equal the state indexes per
-- queue.

-- Set by begin() at each call: the prefix, the retention limits, the keys named after the prefix.
local P, RETAIN_N, RETAIN_MS
local TRIM_BATCH = 20       -- terminal jobs deleted per transition at most (amortised trimming)
local DURATIONS_KEPT = 100  -- run times kept per kind of job, for estimates

local K_SEQ, K_ALL, K_COUNTS, K_LEASES, K_DELAYED, K_FINISHED, K_WORKERS,
  K_WORKER_INFO, K_MODELS, K_MODELS_BY_TIME, K_MODELS_USED, K_DONE, K_STATS

local function k_job(id) return P .. ':job:' .. id end
local function k_state(state) return P .. ':state:' .. state end
local function k_ready(queue) return P .. ':ready:' .. queue end
local function k_waiters(queue) return P .. ':waiters:' .. queue end
local function k_waiting(worker) return P .. ':waiting:' .. worker end
local function k_inbox(worker) return P .. ':inbox:' .. worker end
local function k_handed(worker) return P .. ':handed:' .. worker end
local function k_idem(key) return P .. ':idem:' .. key end
local function k_dur(durkey) return P .. ':dur:' .. durkey end
local function k_watch(id) return P .. ':watch:' .. id end
-- The principal comes last: it may hold any character, the state before it cannot.
local function k_owned(state, principal) return P .. ':owned:' .. state .. ':' .. principal end

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

-- The metrics (aijobs.store.stats): a counter, or two per histogram observation (its bucket
-- and its sum). Summed here and written once per script by flush_counts(), as the counts are:
-- a batch of jobs of one kind touches the same few fields.
-- The queue comes last in a field: it may hold any character, the parts before it cannot.
local stat_deltas = {}  -- reset by begin()
local function stat(metric, job_type, label, queue, by)
  local field = metric .. '|' .. job_type .. '|' .. label .. '|' .. queue
  stat_deltas[field] = (stat_deltas[field] or 0) + by
end
local function observe(metric, job_type, queue, ms)
  ms = math.max(0, ms)
  local bucket = #BUCKET_BOUNDS_MS
  for i, bound in ipairs(BUCKET_BOUNDS_MS) do
    if ms <= bound then bucket = i - 1; break end
  end
  stat(metric, job_type, bucket, queue, 1)
  stat(metric, job_type, 'sum', queue, ms)
end
-- A job starts (its started_at set at `now`): its wait, on its first attempt only.
local function count_start(jk, now)
  local f = redis.call('HMGET', jk, 'queue', 'created_at', 'attempt')
  if f[3] == '1' then observe('wait', '', f[1], now - tonumber(f[2])) end
end
-- A job became `status` (completed, failed, cancelled) at `now`: its run time if it started.
local function count_end(jk, status, now)
  local f = redis.call('HMGET', jk, 'job_type', 'queue', 'started_at')
  stat('finished', f[1], status, f[2], 1)
  if f[3] then observe('run', f[1], f[2], now - tonumber(f[3])) end
end
-- An attempt failed for `reason` (aijobs.store.stats.FailureReason; '' : not a failure).
local function count_failure(queue, reason)
  if reason ~= '' then stat('failure', '', reason, queue, 1) end
end

-- Add `deltas` (field -> integer) to the integer fields of hash `key`: one HINCRBY for a
-- single field, else one HMGET and one HSET, whatever their number (each write a script makes
-- is also a command to propagate to the AOF and replicas). Integers stay exact below 2^53.
local function add_to_hash(key, deltas)
  local fields, values = {}, {}
  for field, delta in pairs(deltas) do
    fields[#fields + 1] = field
    values[#values + 1] = delta
  end
  if #fields == 1 then
    redis.call('HINCRBY', key, fields[1], num(values[1]))
  elseif #fields > 1 then
    local old = redis.call('HMGET', key, unpack(fields))
    local pairs_out = {}
    for i, field in ipairs(fields) do
      pairs_out[#pairs_out + 1] = field
      pairs_out[#pairs_out + 1] = num((tonumber(old[i]) or 0) + values[i])
    end
    each_chunk('HSET', key, pairs_out)
  end
end

-- Count changes are summed here and written once per script by flush_counts(), which every
-- script that changes a state calls before it returns (a batch moves many jobs at once), with
-- the metrics' (stat()).
local count_deltas = {}  -- reset by begin()
local function count(queue, state, delta)
  local field = state .. ':' .. queue
  count_deltas[field] = (count_deltas[field] or 0) + delta
end
local function flush_counts()
  local changed = {}
  for field, delta in pairs(count_deltas) do
    if delta ~= 0 then changed[field] = delta end
  end
  add_to_hash(K_COUNTS, changed)
  -- Every metric field a transition touched is written, a zero sum too (the field exists).
  add_to_hash(K_STATS, stat_deltas)
  count_deltas = {}
  stat_deltas = {}
end

-- A job's principal's own listing indexes: the job enters them in state `to` (nil: leaves
-- them), leaving state `from` (nil: enters them). Nothing for a job without a principal.
-- `principal`: the job's, when the caller read it already (false: it has none).
local function move_owned(id, seq, from, to, principal)
  if principal == nil then principal = redis.call('HGET', k_job(id), 'principal') end
  if not principal then return end
  if from then redis.call('ZREM', k_owned(from, principal), id) end
  if to then redis.call('ZADD', k_owned(to, principal), seq, id) end
  if not from then redis.call('ZADD', k_owned('all', principal), seq, id) end
  if not to then redis.call('ZREM', k_owned('all', principal), id) end
end

-- The state a job shows its owner (aijobs.jobs.shown_state): a job claimed but not started yet
-- (an inference job queued in its worker) is still pending to them. The listing indexes (its
-- principal's too) and the counts go by it; claims, leases and fencing go by the stored state.
local function shown(jk)
  local f = redis.call('HMGET', jk, 'state', 'started_at')
  if f[1] == 'running' and not f[2] then return 'pending' end
  return f[1]
end

-- Move a job between the listing indexes and the counts, from the state it showed.
local function relist(id, queue, seq, from)
  local to = shown(k_job(id))
  if to ~= from then
    redis.call('ZREM', k_state(from), id)
    redis.call('ZADD', k_state(to), seq, id)
    move_owned(id, seq, from, to)
    count(queue, from, -1)
    count(queue, to, 1)
  end
end

-- Set a job's state, moving it between the listing indexes and the counts.
local function set_state(id, queue, seq, to)
  local from = shown(k_job(id))
  redis.call('HSET', k_job(id), 'state', to)
  relist(id, queue, seq, from)
end

-- A waiting worker of `queue` with room for a job of `job_type`, its waiting ended; stale
-- entries (workers no longer waiting) are dropped on the way. `handover`: the job is to be
-- claimed for it (a waiter with lease 0 takes hints only). Returns worker, serial, lease ms.
local function take_waiter(queue, job_type, handover)
  local key = k_waiters(queue)
  for _, worker in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local waiting = redis.call('GET', k_waiting(worker))
    if not waiting then
      redis.call('ZREM', key, worker)
    else
      local serial, max_training, lease = string.match(waiting, '^(%S+) (%d+) (%d+)$')
      lease = tonumber(lease)
      if (job_type ~= 'training' or max_training ~= '0') and (lease > 0 or not handover) then
        redis.call('DEL', k_waiting(worker))
        redis.call('ZREM', key, worker)
        return worker, serial, lease
      end
    end
  end
  return nil
end

local function deliver(worker, entry, lease)
  local ttl = math.max(lease, 10000)
  redis.call('RPUSH', k_inbox(worker), entry)
  -- A dead worker's inbox goes by itself (what was handed to it is rescued when its lease ends)
  redis.call('PEXPIRE', k_inbox(worker), ttl)
  if entry ~= 'hint' then
    redis.call('RPUSH', k_handed(worker), entry)
    redis.call('PEXPIRE', k_handed(worker), ttl)
  end
end

-- `queue`'s best pending job (its rank), or nil when none is pending.
local function best_rank(queue) return redis.call('ZRANGE', k_ready(queue), 0, 0)[1] end
local function type_of(rank)
  return redis.call('HGET', k_job(string.sub(rank, RANK_LEN + 1)), 'job_type')
end

-- How many entries of a queue a claim looks through for the jobs it can take: the inference
-- jobs behind more training jobs than that (which a worker without a free training slot skips)
-- wait for those to be claimed. Bounded work per script, as everywhere.
local READY_SCAN = 1000

-- The best pending jobs of `queue`, in order: up to `others` that are not training jobs and up
-- to `trainings` training jobs, skipping the rest in place. Returns {{rank, job type}, ...} and
-- the ranks met whose job is no longer pending (the caller removes them).
local function ready_jobs(queue, others, trainings)
  local found, stale = {}, {}
  local offset, page = 0, math.max(others + trainings, 1)
  while (others > 0 or trainings > 0) and offset < READY_SCAN do
    local ranks = redis.call('ZRANGE', k_ready(queue), '-', '+', 'BYLEX', 'LIMIT', offset, page)
    for _, rank in ipairs(ranks) do
      local f = redis.call('HMGET', k_job(string.sub(rank, RANK_LEN + 1)), 'state', 'job_type')
      if f[1] ~= 'pending' then
        stale[#stale + 1] = rank
      elseif f[2] == 'training' then
        if trainings > 0 then found[#found + 1] = {rank, f[2]} end
        trainings = trainings - 1
      else
        if others > 0 then found[#found + 1] = {rank, f[2]} end
        others = others - 1
      end
      if others <= 0 and trainings <= 0 then break end
    end
    if #ranks < page then break end
    offset = offset + page
    page = math.min(page * 4, READY_SCAN)
  end
  return found, stale
end

-- Whether `queue` has a pending job a worker without a free training slot can take.
local function inference_ready(queue)
  return #ready_jobs(queue, 1, 0) > 0
end

-- Work may be ready on `queue`: hint one waiting worker that can take its best job to claim.
local function wake(queue)
  if redis.call('EXISTS', k_waiters(queue)) == 0 then return end  -- nobody waits: most calls
  local best = best_rank(queue)
  if not best then return end
  local worker, _, lease = take_waiter(queue, type_of(best), false)
  -- Nobody with a free training slot waits: one without can still take the jobs behind it.
  if not worker and type_of(best) == 'training' and inference_ready(queue) then
    worker, _, lease = take_waiter(queue, 'inference', false)
  end
  if worker then deliver(worker, 'hint', lease) end
end

-- A pending job's claim by `worker`: attempt, fencing token, owner, lease (the caller moves
-- the indexes and counts). A training job starts at once; an inference job may wait in the
-- worker behind others, so it starts when the worker says so (renew) and shows pending until
-- then. Returns the token and the state the job shows.
local function lease_job(jk, worker, token_prefix, deadline, now)
  local f = redis.call('HMGET', jk, 'attempt', 'job_type', 'queue', 'created_at')
  local attempt = tonumber(f[1]) + 1
  local token = token_prefix .. ':' .. attempt
  -- One write for the whole claim (each write is also a command to propagate).
  local set = {'attempt', num(attempt), 'state', 'running', 'token', token, 'owner', worker,
    'lease_until', deadline, 'updated_at', num(now), 'progress', '0'}
  if f[2] == 'training' then
    set[#set + 1] = 'started_at'
    set[#set + 1] = num(now)
    redis.call('HSET', jk, unpack(set))
    if attempt == 1 then observe('wait', '', f[3], now - tonumber(f[4])) end  -- count_start's
    return token, 'running'
  end
  redis.call('HSET', jk, unpack(set))
  return token, 'pending'
end

-- Make a pending job claimable again, in its original FIFO place.
local function requeue(id, queue, rank)
  redis.call('ZADD', k_ready(queue), 0, rank)
  wake(queue)
end

-- A running job whose lease was dropped goes back to pending, in its FIFO place: claimable at
-- once, or from `not_before` (ms) on, kept in delayed until then.
local function back_to_pending(id, queue, seq, rank, not_before)
  set_state(id, queue, seq, 'pending')
  redis.call('HSET', k_job(id), 'progress', '0')
  redis.call('HDEL', k_job(id), 'owner', 'started_at', 'finished_at')
  if not_before then
    redis.call('HSET', k_job(id), 'not_before', num(not_before))
    redis.call('ZADD', K_DELAYED, num(not_before), id)
  else
    requeue(id, queue, rank)
  end
end

-- When a job that failed on `attempt` may run again (aijobs.store.base.RetryBackoff): base *
-- 2^(attempt - 1) ms, capped, jittered down to half; nil for no wait (base 0). The caller seeds
-- math.random from its arguments.
local function retry_at(now, attempt, base, cap)
  if base <= 0 then return nil end
  local delay = math.min(cap, base * 2 ^ math.min(attempt - 1, 40))
  return now + math.floor(delay * (0.5 + math.random() / 2))
end

-- Delayed jobs whose wait is over go back to their ready sets (a bounded batch per call).
local PROMOTE_BATCH = 100
local function promote_due(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', num(now), 'LIMIT', 0,
      PROMOTE_BATCH)) do
    redis.call('ZREM', K_DELAYED, id)
    local f = redis.call('HMGET', k_job(id), 'state', 'queue', 'rank')
    redis.call('HDEL', k_job(id), 'not_before')
    if f[1] == 'pending' then requeue(id, f[2], f[3]) end
  end
end

-- `worker` waits no more: the jobs handed to it that it never took from its inbox go back to
-- pending in their FIFO place, with the attempt they were given undone (they never ran).
-- `popped_too`: its wait was cancelled, so what it popped during that wait never reached it
-- either (the pop's reply was lost with the cancel): those go back as well. Returns their ids.
local function end_wait(worker, popped_too)
  redis.call('DEL', k_waiting(worker))
  local out = {}
  local source = popped_too and k_handed(worker) or k_inbox(worker)  -- handed: the inbox's too
  for _, entry in ipairs(redis.call('LRANGE', source, 0, -1)) do
    if entry ~= 'hint' then
      local handed = cjson.decode(entry)
      local id, token = handed[3][1], handed[2]
      local jk = k_job(id)
      local f = redis.call('HMGET', jk, 'state', 'token', 'queue', 'seq', 'rank')
      if f[1] == 'running' and f[2] == token then
        redis.call('HINCRBY', jk, 'attempt', -1)
        redis.call('HDEL', jk, 'token', 'lease_until')
        redis.call('HSET', jk, 'updated_at', num(now_ms()))
        redis.call('ZREM', K_LEASES, id)
        back_to_pending(id, f[3], f[4], f[5])
        out[#out + 1] = id
      end
    end
  end
  redis.call('DEL', k_inbox(worker), k_handed(worker))
  return out
end

-- Forget a terminal job entirely (retention).
local function delete_job(id)
  redis.call('ZREM', K_FINISHED, id)
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'queue', 'state', 'idem')
  if not f[1] then return end
  redis.call('ZREM', K_ALL, id)
  redis.call('ZREM', k_state(f[2]), id)
  move_owned(id, 0, f[2], nil)
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

-- Forget a model: its record (returned, false when absent) and its indexes.
local function forget_model(id)
  local record = redis.call('HGET', K_MODELS, id)
  redis.call('HDEL', K_MODELS, id)
  redis.call('ZREM', K_MODELS_BY_TIME, id)
  redis.call('ZREM', K_MODELS_USED, id)
  return record
end

-- A job just became terminal: index it for retention, trim, announce.
local function finished(id, now)
  redis.call('ZADD', K_FINISHED, now, id)
  trim_finished(now, TRIM_BATCH)
  announce(id)
end

-- The start of every function: the call's prefix and retention limits, and no changes summed
-- yet (a call that raised an error may have left some).
local function begin(KEYS, ARGV)
  P = KEYS[1]
  RETAIN_N = tonumber(ARGV[1])
  RETAIN_MS = tonumber(ARGV[2])
  K_SEQ = P .. ':seq'
  K_ALL = P .. ':all'
  K_COUNTS = P .. ':counts'
  K_LEASES = P .. ':leases'
  K_DELAYED = P .. ':delayed'
  K_FINISHED = P .. ':finished'
  K_WORKERS = P .. ':workers'
  K_WORKER_INFO = P .. ':worker_info'
  K_MODELS = P .. ':models'
  K_MODELS_BY_TIME = P .. ':models_by_time'
  K_MODELS_USED = P .. ':models_used'
  K_DONE = P .. ':done'
  K_STATS = P .. ':stats'
  count_deltas, stat_deltas = {}, {}
end

-- ---------------------------------------------------------------------------------------------
