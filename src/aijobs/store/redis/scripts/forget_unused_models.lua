-- forget_unused_models: forget the models neither trained nor used (models_used) for a while,
-- the longest unused first, a batch at a time.
-- ARGV: 3 how long unused (ms), 4 batch size.  Returns their records.
-- Models stored before models_used was kept join it first, at their training time (once).
if redis.call('ZCARD', K_MODELS_USED) ~= redis.call('ZCARD', K_MODELS_BY_TIME) then
  redis.call('ZUNIONSTORE', K_MODELS_USED, 2, K_MODELS_USED, K_MODELS_BY_TIME,
    'AGGREGATE', 'MAX')
end
local before = '(' .. num(now_ms() - tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_MODELS_USED, '-inf', before, 'LIMIT', 0,
    tonumber(ARGV[4]))) do
  local record = forget_model(id)
  if record then out[#out + 1] = record end
end
return out
