"""The floor under one submission on Redis: what a producer's round trip costs before any work.

    .venv/bin/python bench/bench_submit_floor.py --redis-url redis://127.0.0.1:6379/0

End to end with one producer (bench_peers.py) is bound by its sequential submissions: each is
one round trip to Redis. Per call, the producer's CPU time and the wall time, from the cheapest
round trip up to `RedisStore.submit`:

- a blocking redis-py `LPUSH` of a small message (Huey's enqueue, pickling aside);
- a `PING` on redis-py's asyncio client, one connection kept for it, and on the store's submit
  lane (one connection too, its commands sent and read on it without the client's wrapping);
- an `EVALSHA` of a script that returns at once, with a submit's arguments, on the lane;
- an `FCALL` of the store's submit function, with arguments built per call (`submit_args`), on
  the client and on the lane;
- `RedisStore.submit`, which adds the grouping, the error handling and the Job answered.

The asyncio client is the one aijobs' API and worker use (FastAPI, asyncio); with the submit
script's own time in Redis, those rows are the floor of any aijobs submission on this machine.
It submits under a prefix of its own and deletes what it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis

from aijobs.jobs import JobType, NewJob
from aijobs.store.redis import RedisStore
from aijobs.store.redis.codec import function_name, submit_args


def measure(call: Callable[[], object], n: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per call of a blocking `call`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def ameasure(call: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per call of a coroutine function `call`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def run(url: str, n: int) -> dict[str, tuple[float, float]]:
    prefix = f"floor-{uuid.uuid4().hex[:8]}"
    blocking = redis.Redis.from_url(url)
    store = RedisStore(url, prefix=prefix)
    await store.open()
    job = NewJob(
        job_type=JobType.INFERENCE,
        queue="q",
        payload={"model_id": "m", "input_data": "1", "parameters": {}},
        model_id="m",
    )
    lane, single = store.lane("submit"), store.client().client()
    returns = await single.script_load("return 1")
    submit = function_name("submit")
    key = store.key
    rows: dict[str, Callable[[], Awaitable[object]]] = {
        "asyncio PING, redis-py client (one connection)": single.ping,
        "asyncio PING, the submit lane": lambda: lane.execute_command("PING"),
        "asyncio EVALSHA of 'return 1', a submit's arguments": lambda: lane.execute_command(
            "EVALSHA", returns, 1, key, *store.script_argv(submit_args(job))
        ),
        "asyncio FCALL of the submit function, redis-py client": lambda: single.fcall(
            submit, 1, key, *store.script_argv(submit_args(job))
        ),
        "asyncio FCALL of the submit function, the submit lane": lambda: lane.fcall(
            submit, 1, key, *store.script_argv(submit_args(job))
        ),
        "RedisStore.submit": lambda: store.submit(job),
    }
    try:
        figures = {
            "blocking LPUSH (Huey's enqueue)": measure(
                lambda: blocking.lpush(f"{prefix}:list", "x" * 100), n
            )
        }
        for name, call in rows.items():
            await ameasure(call, n // 10)  # warm
            figures[name] = await ameasure(call, n)
        return figures
    finally:
        blocking.delete(f"{prefix}:list")
        for name in blocking.scan_iter(match="{" + prefix + "}:*", count=1000):
            blocking.delete(name)  # the jobs it submitted
        blocking.close()
        await single.aclose()
        await store.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    runs = [asyncio.run(run(args.redis_url, args.calls)) for _ in range(args.runs)]
    print(f"per call, median of {args.runs} runs of {args.calls}: producer CPU / wall (us)")
    for name in runs[0]:
        cpu = statistics.median(r[name][0] for r in runs)
        wall = statistics.median(r[name][1] for r in runs)
        print(f"  {name:55s} {cpu:6.1f} / {wall:6.1f}")


if __name__ == "__main__":
    main()
