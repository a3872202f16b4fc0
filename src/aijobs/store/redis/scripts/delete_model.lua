-- delete_model: forget a model.  ARGV: 3 model id.  Returns its record, or nil when absent.
local record = redis.call('HGET', K_MODELS, ARGV[3])
if not record then return false end
redis.call('HDEL', K_MODELS, ARGV[3])
redis.call('ZREM', K_MODELS_BY_TIME, ARGV[3])
return record
