-- list_models (read only): newest first, a page at a time, of all models or one principal's.
-- ARGV: 3 offset, 4 limit, 5 principal ('' for every principal's).
-- Returns {total, model JSON, ...}.
-- One principal's are found by reading each record: models are few next to jobs.
local offset, limit, principal = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if principal == '' then
  local out = {redis.call('ZCARD', K_MODELS_BY_TIME)}
  if limit > 0 then
    for _, id in ipairs(redis.call('ZREVRANGE', K_MODELS_BY_TIME, offset, offset + limit - 1)) do
      local record = redis.call('HGET', K_MODELS, id)
      if record then out[#out + 1] = record end
    end
  end
  return out
end
local out, total = {0}, 0
for _, id in ipairs(redis.call('ZREVRANGE', K_MODELS_BY_TIME, 0, -1)) do
  local record = redis.call('HGET', K_MODELS, id)
  if record and cjson.decode(record).principal == principal then
    total = total + 1
    if total > offset and total <= offset + limit then out[#out + 1] = record end
  end
end
out[1] = total
return out
