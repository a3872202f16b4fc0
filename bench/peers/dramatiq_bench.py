"""Dramatiq peer: RedisBroker (hiredis) with the Results middleware on a RedisBackend."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import dramatiq
import redis
from _common import noop, parse_args, redis_url, run, venv_bin
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

backend = RedisBackend(url=redis_url())
broker = RedisBroker(url=redis_url())
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)
noop_actor = dramatiq.actor(store_results=True)(noop)
THREADS = 8  # dramatiq's default


class DramatiqBench:
    name = "dramatiq"
    version = version("dramatiq")
    notes = (
        f"RedisBroker + Results(RedisBackend), hiredis; dramatiq dramatiq_bench --processes 1 "
        f"--threads {THREADS} (default threads; prefetch 2x threads); the consumer polls an empty "
        "queue with backoff from 5 ms (not configurable below that); "
        "round trip: message.get_result(block=True) (BRPOPLPUSH)"
    )

    def worker_cmd(self) -> list[str]:
        return [
            venv_bin("dramatiq"),
            "dramatiq_bench",
            *("--processes", "1", "--threads", str(THREADS)),
        ]

    async def enqueue(self, i: int) -> Any:
        return noop_actor.send(i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(f"{broker.namespace}:{noop_actor.queue_name}"))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        pipe = r.pipeline(transaction=False)
        for h in handles:
            pipe.exists(backend.build_message_key(h))
        return [bool(v) for v in pipe.execute()]

    async def round_trip(self, i: int) -> Any:
        return noop_actor.send(i).get_result(block=True, timeout=30_000)


if __name__ == "__main__":
    run(DramatiqBench(), parse_args())
