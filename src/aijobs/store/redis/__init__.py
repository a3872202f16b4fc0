"""The Redis job store: any number of API processes and workers, on any number of hosts.

* ``store``: the store, RedisStore;
* ``codec``: what it shares with its Lua scripts (``scripts/``): their text, the job fields,
  how jobs travel;
* ``server``: its start-up checks of the Redis server, and its health;
* ``handover``: how idle workers wait, and are handed the jobs submitted meanwhile;
* ``announce``: how waiting clients learn that a job ended;
* ``check``: the offline audit of its indexes (``python -m aijobs.store.redis.check``).
"""

from aijobs.store.redis.codec import durations_key, priority_key, submit_args
from aijobs.store.redis.server import RedisMisconfigured
from aijobs.store.redis.store import RedisStore

__all__ = ["RedisMisconfigured", "RedisStore", "durations_key", "priority_key", "submit_args"]
