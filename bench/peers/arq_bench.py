"""arq peer (its own venv: arq 0.28 needs redis-py < 6, Celery's kombu 5.7 needs >= 6.4)."""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

import redis
from _common import parse_args, redis_url, run, venv_bin
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, result_key_prefix

REDIS = RedisSettings.from_dsn(redis_url())
# arq polls: the worker reads its queue every poll_delay (default 0.5 s) and job.result() polls
# every poll_delay (default 0.5 s). 1 ms is asyncio's timer resolution: the smallest setting.
POLL_S = 0.001
MAX_JOBS = 10  # arq's default


async def noop(ctx: Any, i: int) -> int:
    return i


async def quiet(ctx: Any) -> None:
    # The arq CLI logs every job at INFO; the other workers run with per-job logs off.
    logging.getLogger("arq").setLevel(logging.WARNING)


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 (arq reads class attributes)
    redis_settings = REDIS
    poll_delay = POLL_S
    max_jobs = MAX_JOBS
    on_startup = quiet


class ArqBench:
    name = "arq"
    version = version("arq")
    notes = (
        f"async def noop; arq arq_bench.WorkerSettings, max_jobs={MAX_JOBS} (default), "
        f"poll_delay={POLL_S} s (default 0.5), per-job INFO logs off, hiredis; "
        f"round trip: job.result(poll_delay={POLL_S})"
    )
    pool: ArqRedis

    def worker_cmd(self) -> list[str]:
        return [venv_bin("arq"), "arq_bench.WorkerSettings"]

    async def open(self) -> None:
        self.pool = await create_pool(REDIS)

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, i: int) -> Any:
        return await self.pool.enqueue_job("noop", i)

    def pending(self, r: redis.Redis) -> int:
        return int(r.zcard(default_queue_name))

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        values = r.mget([result_key_prefix + h.job_id for h in handles])
        return [v is not None for v in values]

    async def round_trip(self, i: int) -> Any:
        job = await self.pool.enqueue_job("noop", i)
        return await job.result(timeout=30, poll_delay=POLL_S)


if __name__ == "__main__":
    run(ArqBench(), parse_args())
