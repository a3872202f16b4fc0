-- stop_waiting: a worker's wait was cancelled (it is stopping): hand it nothing more, and hand
-- back what it was handed meanwhile, popped or not (end_wait): a cancelled wait returns nothing.
-- ARGV: 3 worker id
-- Returns the ids of the jobs handed back.
local out = end_wait(ARGV[3], true)
flush_counts()
return out
