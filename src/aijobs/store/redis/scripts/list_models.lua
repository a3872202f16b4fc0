-- list_models (read only): newest first.  Returns {model JSON, ...}.
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', K_MODELS_BY_TIME, 0, -1)) do
  local record = redis.call('HGET', K_MODELS, id)
  if record then out[#out + 1] = record end
end
return out
