"""The baseline: a bare redis-py loop, one LPUSH / BLMOVE / HSET per job (no library).

Run as the adapter (producer, client) or, with --worker, as the worker process: BLMOVE a job
from `bench:queue` to `bench:processing`, run the no-op, HSET its result into `bench:results`.
A round trip's client polls HGET on the result every 0.1 ms (no blocking read exists for a
hash field without a second write per job).
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import version
from typing import Any

import redis
from _common import noop, parse_args, redis_url, run

QUEUE, PROCESSING, RESULTS = "bench:queue", "bench:processing", "bench:results"
POLL_S = 0.0001


def worker() -> None:
    r = redis.Redis.from_url(redis_url())
    while True:
        raw = r.blmove(QUEUE, PROCESSING, 1, "RIGHT", "LEFT")
        if raw is None:
            continue
        r.hset(RESULTS, raw, noop(int(raw)))


class RedispyBench:
    name = "redis-py"
    version = version("redis")
    notes = (
        "bare loop, hiredis: producer LPUSH; worker BLMOVE + HSET per job (one process); "
        f"round trip: LPUSH then HGET polled every {POLL_S * 1000:g} ms"
    )

    def __init__(self) -> None:
        self.r = redis.Redis.from_url(redis_url())

    def worker_cmd(self) -> list[str]:
        return [sys.executable, "redispy_bench.py", "--worker"]

    async def enqueue(self, i: int) -> Any:
        self.r.lpush(QUEUE, i)
        return str(i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(QUEUE))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        return [v is not None for v in r.hmget(RESULTS, handles)]

    async def round_trip(self, i: int) -> Any:
        self.r.lpush(QUEUE, i)
        while (value := self.r.hget(RESULTS, i)) is None:
            time.sleep(POLL_S)
        return int(value)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        run(RedispyBench(), parse_args())
