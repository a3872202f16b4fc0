"""RQ peer: one SimpleWorker process (no fork per job), results read with RQ 2's blocking API."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import redis
from _common import noop, parse_args, redis_url, run, venv_bin
from rq import Queue

connection = redis.Redis.from_url(redis_url())
queue = Queue("bench", connection=connection)


class RqBench:
    name = "rq"
    version = version("rq")
    notes = (
        "rq worker -w rq.worker.SimpleWorker -q bench (one process, no fork per job; the default "
        "Worker forks a work horse per job), hiredis; "
        "round trip: job.latest_result(timeout=30) (blocks on the result stream, XREAD)"
    )

    def worker_cmd(self) -> list[str]:
        return [
            venv_bin("rq"),
            "worker",
            *("--url", redis_url(), "-w", "rq.worker.SimpleWorker", "-q", "bench"),
        ]

    async def enqueue(self, i: int) -> Any:
        return queue.enqueue(noop, i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(queue.key))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        pipe = r.pipeline(transaction=False)
        for h in handles:
            pipe.hget(h.key, "status")
        return [v == b"finished" for v in pipe.execute()]

    async def round_trip(self, i: int) -> Any:
        result = queue.enqueue(noop, i).latest_result(timeout=30)
        return None if result is None else result.return_value


if __name__ == "__main__":
    run(RqBench(), parse_args())
