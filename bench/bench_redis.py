"""Raw throughput and read latency of the Redis store (the store alone: no HTTP, no worker child).

    .venv/bin/python bench/bench_redis.py                       # 5,000 jobs; 1,000,000 stored
    .venv/bin/python bench/bench_redis.py --fill 100000 --fsync always

Starts its own redis-server (AOF on; appendfsync everysec by default, as most deployments run
it, or --fsync always) and measures, with the store's own methods over one client:

1. Throughput, N no-op jobs: submit all (50 in flight), then drain them with batched claims
   (`claim(limit=B)`) and each batch finished in one call (`finish_many`, as the worker does):
   jobs/s for each phase and for submit + claim + finish per job. Then the same drain one job
   at a time (claim 1, finish, next: 2 round trips per job), and sequential round trips
   submit -> claim -> finish -> get, p50/p99.
2. A store of --fill jobs (90 % completed, 5 % failed, 1 % cancelled, 3.5 % pending, 0.5 %
   running; loaded through the real scripts, pipelined): Redis memory per job, and the latency
   of list (first page and a deep page, with and without a status filter), get, queue depths,
   claim, and a rescue pass with nothing expired.

With --listpack-value 1024, Redis keeps a job's hash in its compact encoding (a job's payload
is longer than Redis's default limit of 64 bytes per value): less memory per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aijobs.jobs import Finish, JobType, NewJob, State
from aijobs.store.redis import RedisStore, submit_args

QUEUES = ["sklearn", "pytorch-2.1-gpu", "tensorflow", "pytorch-2.1-cpu"]
PAYLOAD = {  # a typical training submission
    "model_type": "random_forest",
    "data_path": "/data/tabular_data.csv",
    "hyperparameters": {"n_estimators": 100, "max_depth": 10, "random_state": 42},
    "description": "Train Random Forest for classification",
    "requires_gpu": False,
    "framework_override": "sklearn",
}
MIX = [
    (State.COMPLETED, 0.90),
    (State.FAILED, 0.05),
    (State.CANCELLED, 0.01),
    (State.PENDING, 0.035),
    (State.RUNNING, 0.005),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(root: Path, fsync: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)),
            *("--appendonly", "yes", "--appendfsync", fsync, "--save", ""),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as s,
        ):
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    sys.exit("redis-server did not start")


def job(queue: str = "sklearn", **kw: Any) -> NewJob:
    return NewJob(
        job_type=JobType.TRAINING, queue=queue, payload=PAYLOAD, model_type="random_forest", **kw
    )


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """(p50, p99) in ms."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), pct(samples, 0.99)


async def bounded(coros: list[Awaitable[Any]], in_flight: int) -> list[Any]:
    sem = asyncio.Semaphore(in_flight)

    async def one(c: Awaitable[Any]) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def throughput(url: str, n: int, batch: int, rtts: int) -> None:
    store = RedisStore(url, prefix="throughput", retain_jobs=0)
    await store.open()
    try:
        t0 = time.perf_counter()
        await bounded([store.submit(job()) for _ in range(n)], 50)
        t_submit = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = 0
        while claims := await store.claim(["sklearn"], "bench", 60, limit=batch):
            oks = await store.finish_many([Finish(c.job.id, c.token, {}) for c in claims])
            done += sum(oks)
        t_drain = time.perf_counter() - t0
        assert done == n, done
        print(f"  submit ({n}, 50 in flight)            {n / t_submit:9,.0f} jobs/s")
        print(f"  claim {batch} at a time + finish     {n / t_drain:9,.0f} jobs/s")
        print(f"  submit + claim + finish per job      {n / (t_submit + t_drain):9,.0f} jobs/s")

        await bounded([store.submit(job()) for _ in range(n)], 50)
        t0 = time.perf_counter()
        while claims := await store.claim(["sklearn"], "bench", 60, limit=1):
            await store.finish(claims[0].job.id, claims[0].token, {})
        t_single = time.perf_counter() - t0
        print(f"  claim 1 + finish, one job at a time  {n / t_single:9,.0f} jobs/s")

        async def round_trip() -> None:
            submitted = await store.submit(job())
            (claim,) = await store.claim(["sklearn"], "bench", 60)
            await store.finish(claim.job.id, claim.token, {})
            await store.get(submitted.id)

        p50, p99 = await timed(round_trip, rtts)
        print(f"  submit->claim->finish->get ({rtts})  p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    finally:
        await store.close()


async def fill(store: RedisStore, n: int, rng: random.Random) -> None:
    """n jobs in the MIX of states, through the real scripts, pipelined."""
    chunk = 2000
    states = [s for s, share in MIX for _ in range(round(share * 1000))]
    loaded = 0
    client = store.client()
    t0 = time.perf_counter()
    while loaded < n:
        size = min(chunk, n - loaded)
        queue = QUEUES[(loaded // chunk) % len(QUEUES)]
        async with client.pipeline(transaction=False) as pipe:
            for i in range(size):
                store.queue_script(pipe, "submit", *submit_args(job(queue, priority=i % 3)))
            await pipe.execute()
        # move the chunk's jobs to their target states: claim them all, then finish/fail/
        # cancel most of them, leaving pending and running ones
        targets = [rng.choice(states) for _ in range(size)]
        keep_pending = targets.count(State.PENDING)
        claims = await store.claim([queue], "filler", 3600, limit=size - keep_pending)
        async with client.pipeline(transaction=False) as pipe:
            for claim, target in zip(
                claims, [t for t in targets if t is not State.PENDING], strict=False
            ):
                jid, tok = claim.job.id, claim.token
                if target is State.COMPLETED:
                    store.queue_script(pipe, "finish", jid, tok, "{}", "0", "", "", "", 0)
                elif target is State.FAILED:
                    store.queue_script(  # fail.lua's ARGV: no retry, no log, counted
                        pipe, "fail", jid, tok, "boom", "0", "0", "", "1", 0, 0, 0, "error"
                    )
                elif target is State.CANCELLED:
                    store.queue_script(pipe, "cancel", jid, "bench")
            await pipe.execute()
        loaded += size
        if loaded % 100_000 < chunk:
            rate = loaded / (time.perf_counter() - t0)
            print(f"    {loaded:>9,} jobs loaded ({rate:,.0f} jobs/s)", flush=True)


async def big_store(url: str, n: int, runs: int) -> None:
    store = RedisStore(url, prefix="big", retain_jobs=0, retain_seconds=0)
    await store.open()
    try:
        client = store.client()
        before = int((await client.info("memory"))["used_memory"])
        await fill(store, n, random.Random(1))
        await asyncio.sleep(1)
        after = int((await client.info("memory"))["used_memory"])
        _, total = await store.list_jobs(limit=1)
        counts = {s.value: (await store.list_jobs(s, limit=1))[1] for s in State}
        print(f"  stored: {total:,} jobs {counts}")
        print(
            f"  Redis memory: {(after - before) / total:,.0f} bytes per job "
            f"({(after - before) / 2**20:,.0f} MiB)"
        )
        deep = total // 2
        checks: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("list_jobs(limit=100)", lambda: store.list_jobs(limit=100)),
            ("list_jobs(completed, limit=100)", lambda: store.list_jobs(State.COMPLETED, 100)),
            ("list_jobs(pending, limit=100)", lambda: store.list_jobs(State.PENDING, 100)),
            (f"list_jobs(limit=100, offset={deep:,})", lambda: store.list_jobs(None, 100, deep)),
            ("get(job)", lambda: store.get(sample)),
            ("queue_depths()", store.queue_depths),
            ("rescue_expired() (none due)", store.rescue_expired),
        ]
        page, _ = await store.list_jobs(State.COMPLETED, limit=1, offset=total // 3)
        sample = page[0].id
        for name, fn in checks:
            p50, p99 = await timed(fn, runs)
            print(f"  {name:<38} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")

        async def claim_and_finish() -> None:
            (claim,) = await store.claim(QUEUES, "bench", 60)
            await store.finish(claim.job.id, claim.token, {})

        p50, p99 = await timed(claim_and_finish, runs)
        print(f"  {'claim(all queues) + finish':<38} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="aijobs-bench-redis-"))
    extra = ["--hash-max-listpack-value", str(args.listpack_value)] if args.listpack_value else []
    proc, url = start_redis(root, args.fsync, *extra)
    try:
        version = (
            subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
            .stdout.split()[2]
            .removeprefix("v=")
        )
        print(f"Redis {version}, appendonly yes, appendfsync {args.fsync} {' '.join(extra)}")
        if args.jobs:
            print(f"\n1. throughput, {args.jobs:,} no-op jobs")
            await throughput(url, args.jobs, args.batch, args.runs)
        if args.fill:
            print(f"\n2. {args.fill:,} jobs stored")
            await big_store(url, args.fill, args.runs)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs for the throughput runs")
    parser.add_argument("--batch", type=int, default=100, help="jobs per claim")
    parser.add_argument("--fill", type=int, default=1_000_000, help="jobs in the big store")
    parser.add_argument("--runs", type=int, default=300, help="samples per latency figure")
    parser.add_argument("--fsync", choices=["everysec", "always"], default="everysec")
    parser.add_argument(
        "--listpack-value",
        type=int,
        default=0,
        help="run Redis with hash-max-listpack-value N (compact job hashes; default: Redis's 64)",
    )
    asyncio.run(main(parser.parse_args()))
