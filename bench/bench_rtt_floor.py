"""The floor under a job's round trip: the hops of aijobs' latency path, with nothing else.

    .venv/bin/python bench/bench_rtt_floor.py --redis-url redis://127.0.0.1:6379/0 --runs 3

A client submits with one Lua script that stores the job and pushes it to a worker's inbox; the
worker pops it (BLPOP), sends it to its child process over a pipe, reads the child's answer,
and finishes with one Lua script that stores the result and tells the client; the client is
told on Pub/Sub (as `wait_terminal` is) or, in the sync variant, by a BLPOP of a result list.
That is the path a job takes through aijobs when a worker is waiting (submit hands it over),
minus everything else: the job record's fields, leases, fencing tokens, indexes, counts,
parsing into a Job, the worker's bookkeeping. Both redis-py clients are measured, the asyncio
one that aijobs uses (its worker and API are asyncio) and the blocking one Huey uses.

The medians are what no implementation of that path can beat on this machine with that client:
docs/benchmarks.md sets them beside the peers' round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import redis
import redis.asyncio as aioredis

SUBMIT = """
redis.call('HSET', KEYS[1] .. ':job:' .. ARGV[1], 'state', 'running', 'payload', ARGV[2])
redis.call('RPUSH', KEYS[1] .. ':inbox', ARGV[1] .. ' ' .. ARGV[2])
return 1
"""
FINISH = """
redis.call('HSET', KEYS[1] .. ':job:' .. ARGV[1], 'state', 'completed', 'result', ARGV[2])
if ARGV[3] == 'pubsub' then
  redis.call('PUBLISH', KEYS[1] .. ':done', ARGV[1])
else
  redis.call('RPUSH', KEYS[1] .. ':done:' .. ARGV[1], ARGV[2])
end
return 1
"""
WARMUP = 100


def child() -> None:
    for line in sys.stdin:
        sys.stdout.write(line)
        sys.stdout.flush()


def spawn(*args: str, pipes: bool = False) -> subprocess.Popen[str]:
    io = subprocess.PIPE if pipes else None
    cmd = [sys.executable, __file__, *args]
    return subprocess.Popen(cmd, stdin=io, stdout=io, text=True, bufsize=1)


def sync_worker(url: str, key: str, notify: str) -> None:
    r = redis.Redis.from_url(url, decode_responses=True)
    finish = r.register_script(FINISH)
    kid = spawn("child", pipes=True)
    assert kid.stdin is not None
    assert kid.stdout is not None
    while True:
        popped = r.blpop([f"{key}:inbox"])
        assert popped is not None
        job_id, payload = popped[1].split(" ", 1)
        if job_id == "stop":
            break
        kid.stdin.write(payload + "\n")
        finish(keys=[key], args=[job_id, kid.stdout.readline().strip(), notify])
    kid.kill()


async def async_worker(url: str, key: str, notify: str) -> None:
    r = aioredis.Redis.from_url(url, decode_responses=True, protocol=2)
    finish = r.register_script(FINISH)
    kid = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "child", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert kid.stdin is not None
    assert kid.stdout is not None
    while True:
        popped = await r.blpop([f"{key}:inbox"])  # type: ignore[misc]
        assert popped is not None
        job_id, payload = str(popped[1]).split(" ", 1)
        if job_id == "stop":
            break
        kid.stdin.write((payload + "\n").encode())
        answer = (await kid.stdout.readline()).decode().strip()
        await finish(keys=[key], args=[job_id, answer, notify])
    kid.kill()


def sync_client(url: str, trips: int) -> list[float]:
    key = f"{{floor-{uuid.uuid4().hex[:8]}}}"
    r = redis.Redis.from_url(url, decode_responses=True)
    submit = r.register_script(SUBMIT)
    worker = spawn("worker", "sync", url, key, "list")
    samples = []
    for i in range(trips + WARMUP):
        t = time.perf_counter()
        submit(keys=[key], args=[str(i), json.dumps({"input_data": i})])
        r.blpop([f"{key}:done:{i}"])
        samples.append(time.perf_counter() - t)
    r.rpush(f"{key}:inbox", "stop -")
    worker.wait()
    r.delete(*r.keys(key + "*"))
    return samples[WARMUP:]


async def async_client(url: str, trips: int) -> list[float]:
    key = f"{{floor-{uuid.uuid4().hex[:8]}}}"
    r = aioredis.Redis.from_url(url, decode_responses=True, protocol=2)
    submit = r.register_script(SUBMIT)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{key}:done")
    worker = spawn("worker", "async", url, key, "pubsub")
    samples = []
    for i in range(trips + WARMUP):
        t = time.perf_counter()
        await submit(keys=[key], args=[str(i), json.dumps({"input_data": i})])
        while (message := await pubsub.get_message(timeout=10)) is None or message["data"] != str(
            i
        ):
            pass
        samples.append(time.perf_counter() - t)
    await r.rpush(f"{key}:inbox", "stop -")  # type: ignore[misc]
    worker.wait()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await r.delete(*await r.keys(key + "*"))
    await r.aclose()
    return samples[WARMUP:]


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        return child()
    if sys.argv[1:2] == ["worker"]:
        kind, url, key, notify = sys.argv[2:6]
        if kind == "sync":
            return sync_worker(url, key, notify)
        return asyncio.run(async_worker(url, key, notify))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON line: {client: p50 ms}")
    args = parser.parse_args()
    medians: dict[str, list[float]] = {"redis-py asyncio": [], "redis-py blocking": []}
    for _ in range(args.runs):
        trips = args.round_trips
        medians["redis-py asyncio"].append(
            statistics.median(asyncio.run(async_client(args.redis_url, trips)))
        )
        medians["redis-py blocking"].append(statistics.median(sync_client(args.redis_url, trips)))
    if args.json:
        summary = {name: round(statistics.median(v) * 1000, 3) for name, v in medians.items()}
        print(json.dumps(summary))
        return
    for name, values in medians.items():
        ms = sorted(v * 1000 for v in values)
        runs = ", ".join(f"{v:.3f}" for v in ms)
        print(f"{name:18s} round-trip floor p50 {statistics.median(ms):.3f} ms (runs: {runs})")


if __name__ == "__main__":
    main()
