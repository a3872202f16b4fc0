"""SAQ peer: RedisQueue (blocking BLMOVE dequeue, hiredis); round trips with queue.apply."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import redis
from _common import parse_args, redis_url, run, venv_bin
from saq import Queue

queue = Queue.from_url(redis_url(), name="bench")
CONCURRENCY = 10  # SAQ's default
# queue.apply polls the job's state; 1 ms is asyncio's timer resolution. (job.refresh with
# until_complete waits on pub/sub instead, but misses a job that finishes between its read and its
# subscribe: with a no-op job that happened within 100 round trips, then it waits its timeout.)
POLL_S = 0.001


async def noop(ctx: Any, *, i: int) -> int:
    return i


settings = {"queue": queue, "functions": [noop], "concurrency": CONCURRENCY}


class SaqBench:
    name = "saq"
    version = version("saq")
    notes = (
        f"async def noop; saq saq_bench.settings --workers 1 --quiet, concurrency={CONCURRENCY} "
        "(default), hiredis; "
        "round trip: queue.apply(poll_interval=0.001)"
    )

    def worker_cmd(self) -> list[str]:
        return [venv_bin("saq"), "saq_bench.settings", "--workers", "1", "--quiet"]

    async def open(self) -> None:
        await queue.connect()

    async def close(self) -> None:
        await queue.disconnect()

    async def enqueue(self, i: int) -> Any:
        return await queue.enqueue("noop", i=i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(queue.namespace("queued")))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        values = r.mget([h.id for h in handles])
        return [v is not None and json.loads(v)["status"] == "complete" for v in values]

    def describe(self, r: redis.Redis, handle: Any) -> str:
        return repr(r.get(handle.id))

    async def round_trip(self, i: int) -> Any:
        return await queue.apply("noop", timeout=30, poll_interval=POLL_S, i=i)


if __name__ == "__main__":
    run(SaqBench(), parse_args())
