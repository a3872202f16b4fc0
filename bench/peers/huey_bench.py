"""Huey peer: RedisHuey (blocking BRPOP dequeue, hiredis), results via notify_result (BLPOP)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import redis
from _common import noop, parse_args, redis_url, run, venv_bin
from huey import RedisHuey

# notify_result=True: result(blocking=True) waits on a BLPOP instead of polling from 50 ms up.
huey = RedisHuey("bench", url=redis_url(), notify_result=True)
noop_task = huey.task()(noop)


class HueyBench:
    name = "huey"
    version = version("huey")
    notes = (
        "RedisHuey(blocking=True, notify_result=True), hiredis; "
        "huey_consumer huey_bench.huey -w 1 -k thread -n -q (one process, one worker thread); "
        "round trip: result(blocking=True)"
    )

    def worker_cmd(self) -> list[str]:
        return [venv_bin("huey_consumer"), "huey_bench.huey", "-w", "1", "-k", "thread", "-n", "-q"]

    async def enqueue(self, i: int) -> Any:
        return noop_task(i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(huey.storage.queue_key))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        values = r.hmget(huey.storage.result_key, [h.id for h in handles])
        return [v is not None for v in values]

    async def round_trip(self, i: int) -> Any:
        return noop_task(i)(blocking=True, timeout=30)


if __name__ == "__main__":
    run(HueyBench(), parse_args())
