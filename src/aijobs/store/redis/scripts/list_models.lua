-- list_models (read only): newest first, a page at a time.
-- ARGV: 3 offset, 4 limit.  Returns {total, model JSON, ...}.
local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {redis.call('ZCARD', K_MODELS_BY_TIME)}
if limit > 0 then
  for _, id in ipairs(redis.call('ZREVRANGE', K_MODELS_BY_TIME, offset, offset + limit - 1)) do
    local record = redis.call('HGET', K_MODELS, id)
    if record then out[#out + 1] = record end
  end
end
return out
