-- list_models (read only): newest first, all of them or one principal's.
-- ARGV: 3 principal ('' for every principal's).  Returns {model JSON, ...}.
local principal = ARGV[3]
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', K_MODELS_BY_TIME, 0, -1)) do
  local record = redis.call('HGET', K_MODELS, id)
  if record and (principal == '' or cjson.decode(record).principal == principal) then
    out[#out + 1] = record
  end
end
return out
