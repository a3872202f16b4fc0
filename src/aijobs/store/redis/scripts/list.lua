-- list (read only): newest first, with an optional state filter, and the total that matches;
-- each job's ROW_FIELDS only (never its payload, result or log).
-- A rank range of a sorted set: O(log n + offset + limit) pointer steps, never a scan of jobs.
-- ARGV: 3 state ('' for all), 4 offset, 5 limit, 6 principal ('' for every principal's).
-- Returns {total, row fields, ...}.
local index = ARGV[3] == '' and K_ALL or k_state(ARGV[3])
if ARGV[6] ~= '' then index = k_owned(ARGV[3] == '' and 'all' or ARGV[3], ARGV[6]) end
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {redis.call('ZCARD', index)}
if limit > 0 then
  for _, id in ipairs(redis.call('ZREVRANGE', index, offset, offset + limit - 1)) do
    out[#out + 1] = redis.call('HMGET', k_job(id), unpack(ROW_FIELDS))
  end
end
return out
