-- oldest_waiting (read only): per queue, when the claimable job waiting longest was submitted.
-- A ready set is in claim order, priority desc then FIFO, so the oldest job of each priority
-- heads its band: one ZRANGE BYLEX per priority in use reaches every head, never a scan. Jobs
-- waiting out a back-off (delayed) or held by a worker are not waiting for a worker.
-- ARGV: 3.. queue names.  Returns {queue, created_at ms, ...} for the queues with such jobs.
local PRIORITY_LEN = RANK_LEN - SEQ_DIGITS
local out = {}
for i = 3, #ARGV do
  local ready = k_ready(ARGV[i])
  local head = redis.call('ZRANGE', ready, 0, 0)[1]
  local oldest = head
  while head do
    if string.sub(head, PRIORITY_LEN + 1, RANK_LEN) < string.sub(oldest, PRIORITY_LEN + 1, RANK_LEN)
    then
      oldest = head
    end
    -- '~' sorts after every digit: past the whole band of this priority key
    local past_band = '(' .. string.sub(head, 1, PRIORITY_LEN) .. '~'
    head = redis.call('ZRANGE', ready, past_band, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
  end
  if oldest then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = redis.call('HGET', k_job(string.sub(oldest, RANK_LEN + 1)), 'created_at')
  end
end
return out
