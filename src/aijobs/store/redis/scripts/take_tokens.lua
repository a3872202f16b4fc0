-- take_tokens: count one request against a key's fixed window (windows start at the epoch, on
-- the server's clock, so every API process agrees on them), unless the window is full.
-- ARGV: 3 key, 4 limit, 5 window (ms).  Returns {allowed 0/1, remaining, ms until the reset}.
local limit, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local start = now - now % window
local key = P .. ':rate:' .. num(start) .. ':' .. ARGV[3]
local reset = start + window - now
local used = tonumber(redis.call('GET', key) or '0')
if used >= limit then return {0, 0, reset} end
used = redis.call('INCR', key)
if used == 1 then redis.call('PEXPIRE', key, reset + 1000) end
return {1, limit - used, reset}
