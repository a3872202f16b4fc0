"""Celery peer: Redis broker and result backend (hiredis), one solo worker process."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import redis
from _common import noop, parse_args, redis_url, run, venv_bin
from celery import Celery

PREFETCH = 128  # Celery's advice for many short tasks: a high prefetch multiplier (64, 128)

app = Celery("celery_bench", broker=redis_url(), backend=redis_url())
app.conf.update(
    worker_prefetch_multiplier=PREFETCH,
    task_acks_late=False,  # the default: ack on receipt
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_extended=False,
)
noop_task = app.task(name="noop")(noop)


class CeleryBench:
    name = "celery"
    version = version("celery")
    notes = (
        "Redis broker + Redis result backend, hiredis; celery -A celery_bench worker -P solo "
        f"(one process, no pool children) --prefetch-multiplier {PREFETCH} --without-gossip "
        "--without-mingle --without-heartbeat -l warning; "
        "round trip: AsyncResult.get(timeout=30) (pub/sub on the result key)"
    )

    def worker_cmd(self) -> list[str]:
        return [
            venv_bin("celery"),
            *("-A", "celery_bench", "worker", "-P", "solo", "-l", "warning"),
            *("--prefetch-multiplier", str(PREFETCH)),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]

    async def enqueue(self, i: int) -> Any:
        return noop_task.delay(i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.llen(app.conf.task_default_queue))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        keys = [app.backend.get_key_for_task(h.id) for h in handles]
        return [v is not None for v in r.mget(keys)]

    async def round_trip(self, i: int) -> Any:
        return noop_task.delay(i).get(timeout=30)


if __name__ == "__main__":
    run(CeleryBench(), parse_args())
