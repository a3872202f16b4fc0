-- renew: extend every lease a worker holds, in one round trip; progress lands only with a valid
-- token (fenced like every write). Answers per job: ok, cancel (the job was cancelled: kill the
-- child) or lost (rescued, finished or never ours: kill the child, write nothing).
-- ARGV: 3 worker id, 4 lease ms, 5 characters of a log kept, then 9 values per job: id, token,
--       fraction, metrics JSON, history JSON ('' leaves a value unchanged), '1' when the job has
--       started (a claimed inference job starts when its worker's child gets to it: it shows
--       running from then), a log chunk, its offset in the job's log and its length in
--       characters (0: no chunk)
local worker, lease, keep = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local deadline = num(now + lease)

-- One UTF-8 character: a lead byte and its continuation bytes. Offsets and lengths of a log
-- are in characters, as on the Python side; Lua's strings are bytes.
local UTF8_CHAR = '[^\128-\191][\128-\191]*'
local function drop_chars(s, n)  -- s without its first n characters
  if n <= 0 then return s end
  return (string.gsub(s, UTF8_CHAR, '', n))
end
local function char_count(s)
  local _, n = string.gsub(s, '[^\128-\191]', '')
  return n
end

-- The chunk appended where it goes on from the stored log: only what the log lacks of it (a
-- retried renewal adds nothing twice); after a gap (output the worker skipped to keep the
-- tail) it starts the kept text afresh. The kept text is the last `keep` characters.
local function append_log(jk, chunk, at, chars)
  local f = redis.call('HMGET', jk, 'log', 'log_length')
  local old, length = f[1] or '', tonumber(f[2] or '0')
  if at + chars <= length then return end
  local text, n = chunk, chars
  if at <= length then
    text = old .. drop_chars(chunk, length - at)
    n = char_count(old) + chars - (length - at)
  end
  if n > keep then text = drop_chars(text, n - keep) end
  redis.call('HSET', jk, 'log', text, 'log_length', at + chars)
end

local out = {}
for i = 6, #ARGV, 9 do
  local id, token = ARGV[i], ARGV[i + 1]
  local jk = k_job(id)
  local f = redis.call('HMGET', jk, 'state', 'token')
  if f[2] == token and f[1] == 'running' then
    redis.call('HSET', jk, 'lease_until', deadline, 'updated_at', num(now))
    redis.call('ZADD', K_LEASES, 'XX', deadline, id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'progress', ARGV[i + 2]) end
    if ARGV[i + 3] ~= '' then redis.call('HSET', jk, 'metrics', ARGV[i + 3]) end
    if ARGV[i + 4] ~= '' then redis.call('HSET', jk, 'history', ARGV[i + 4]) end
    if tonumber(ARGV[i + 8]) > 0 then
      append_log(jk, ARGV[i + 6], tonumber(ARGV[i + 7]), tonumber(ARGV[i + 8]))
    end
    if ARGV[i + 5] == '1' and shown(jk) == 'pending' then
      redis.call('HSET', jk, 'started_at', num(now))
      count_start(jk, now)
      local q = redis.call('HMGET', jk, 'queue', 'seq')
      relist(id, q[1], q[2], 'pending')
    end
    out[#out + 1] = 'ok'
  elseif f[2] == token and f[1] == 'cancelled' then
    out[#out + 1] = 'cancel'
  else
    out[#out + 1] = 'lost'
  end
end
redis.call('ZADD', K_WORKERS, 'XX', num(now), worker)  -- a heartbeat, if registered
flush_counts()
return out
