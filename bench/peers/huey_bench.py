"""Huey peer: RedisHuey (blocking BRPOP dequeue, hiredis), in four settings (--variant).

The consumer either as its fastest setting on two cores, two worker processes
(`-w 2 -k process`), or as one worker thread; each with and without `notify_result=True`.
Without it, result(blocking=True) polls the result from 50 ms up; with it, the worker also
pushes each result to a list the caller waits on with BLPOP: one more write per job.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import redis
from _common import noop, parse_args, redis_url, run, venv_bin
from huey import RedisHuey

# One Huey per result mode: the consumer is pointed at one by its module attribute.
huey = RedisHuey("bench", url=redis_url())
huey_notify = RedisHuey("bench-notify", url=redis_url(), notify_result=True)
TASKS = {"huey": huey.task()(noop), "huey_notify": huey_notify.task()(noop)}

VARIANTS = {  # --variant -> (workers, worker type, notify_result)
    "w2-process": (2, "process", False),
    "w2-process-notify": (2, "process", True),
    "w1-thread": (1, "thread", False),
    "w1-thread-notify": (1, "thread", True),
}


class HueyBench:
    version = version("huey")

    def __init__(self, variant: str) -> None:
        self.workers, self.kind, notify = VARIANTS[variant]
        self.name = f"huey-{variant}"
        self.attr = "huey_notify" if notify else "huey"
        self.huey = huey_notify if notify else huey
        self.task = TASKS[self.attr]
        self.notes = (
            f"RedisHuey(blocking=True, notify_result={notify}), hiredis; "
            f"huey_consumer huey_bench.{self.attr} -w {self.workers} -k {self.kind} -n -q; "
            "round trip: result(blocking=True)"
            + ("" if notify else " (polls the result from 50 ms up)")
        )

    def worker_cmd(self) -> list[str]:
        return [
            venv_bin("huey_consumer"),
            f"huey_bench.{self.attr}",
            *("-w", str(self.workers), "-k", self.kind, "-n", "-q"),
        ]

    async def enqueue(self, i: int) -> Any:
        return self.task(i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(self.huey.storage.queue_key))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        values = r.hmget(self.huey.storage.result_key, [h.id for h in handles])
        return [v is not None for v in values]

    async def round_trip(self, i: int) -> Any:
        return self.task(i)(blocking=True, timeout=30)


if __name__ == "__main__":
    args = parse_args(VARIANTS)
    run(HueyBench(args.variant), args)
