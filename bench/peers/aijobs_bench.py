"""aijobs in the peer benchmark (bench/bench_peers.py): the same CLI and JSON line as every peer.

    .venv/bin/python bench/peers/aijobs_bench.py --redis-url redis://127.0.0.1:6379/0

The no-op goes through the real worker path: one `aijobs worker` process claims the jobs from
the Redis store, its inference child runs the no-op runtime (bench/noop_runtime.py) on each, and
the worker finishes them with its claim's fencing token. Jobs are inference jobs on a model that
a no-op training job (a training child, as always) made first: inference is the path meant for
short jobs.

The phases and figures are those of every peer (bench/peers/_common.py): the drain of N jobs
submitted before the worker starts; end to end, N more submitted one at a time with
`store.submit` (what an API process does per POST) while the warm worker drains them, with the
CPU time of this process, the worker and its child, and the redis-server (bench/peers/_cpu.py);
then sequential round trips. This process submits on the event loop an API process runs on
(uvloop, as uvicorn picks it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import uvloop
from _common import quantile
from _cpu import end_to_end_window, per_job_ms

from aijobs import __version__
from aijobs.jobs import Job, JobType, NewJob, State
from aijobs.settings import Settings
from aijobs.store import JobStore, open_store

BENCH = Path(__file__).resolve().parents[1]
QUEUE = "sklearn"  # any catalogued queue: the worker serves it with the no-op runtime
RUNTIME = "noop_runtime:NoopRuntime"
POLL = 0.0005
PREFETCH = 256
WARMUP = 10


def worker_env(url: str, home: Path, prefix: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {
        "AIJOBS_STORE_URL": url,
        "AIJOBS_REDIS_PREFIX": prefix,
        "AIJOBS_HOME": str(home),
        "AIJOBS_DATA_ROOTS": str(home / "data"),
        # Tuned for many tiny jobs, as Celery's prefetch multiplier is for the peers: the worker
        # holds up to this many claimed inference jobs (default 16).
        "AIJOBS_INFERENCE_PREFETCH": str(PREFETCH),
        "PYTHONPATH": path,
    }


def start_worker(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    with open(home / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "aijobs", "worker", "--queue", QUEUE, "--runtime", RUNTIME],
            env=env,
            stdout=log,
            stderr=log,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def until_done(store: JobStore, job_id: str, timeout: float = 60.0) -> Job:
    job = await store.wait_terminal(job_id, timeout)
    if not job.terminal:
        raise SystemExit(f"job {job_id} did not finish: {job.state}")
    return job


async def all_completed_at(store: JobStore, expected: int, grace_s: float = 10.0) -> float:
    """The perf_counter time by which `expected` jobs are seen completed (else exit 1)."""
    deadline = time.monotonic() + grace_s
    while True:
        seen = time.perf_counter()
        _, completed = await store.list_jobs(State.COMPLETED, limit=1)
        if completed == expected:
            return seen
        if time.monotonic() > deadline:
            raise SystemExit(f"{completed} of {expected} jobs completed")
        await asyncio.sleep(POLL)


def redis_pid(url: str) -> int:
    with redis.Redis.from_url(url) as r:
        return int(r.info("server")["process_id"])


async def end_to_end(
    store: JobStore, model_id: str, worker_pid: int, jobs: int, url: str
) -> dict[str, float]:
    """N jobs submitted one at a time while the worker drains; clocked to the last completion."""
    cpu = end_to_end_window(worker_pid, redis_pid(url))
    _, before = await store.list_jobs(State.COMPLETED, limit=1)
    cpu.start()
    t0 = time.perf_counter()
    last = ""
    for i in range(jobs):
        last = (await store.submit(inference(model_id, jobs + i))).id
    submitted = time.perf_counter()
    await until_done(store, last)
    t1 = await all_completed_at(store, before + jobs)
    spent = cpu.stop()
    return {
        "e2e_per_s": round(jobs / (t1 - t0), 1),
        "e2e_tail_ms": round((t1 - submitted) * 1000, 2),
        **per_job_ms(spent, jobs),
    }


def inference(model_id: str, i: int) -> NewJob:
    payload = {"model_id": model_id, "input_data": str(i), "parameters": {}}
    return NewJob(job_type=JobType.INFERENCE, queue=QUEUE, payload=payload, model_id=model_id)


async def run(url: str, jobs: int, round_trips: int) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="aijobs-bench-"))
    (home / "data").mkdir()
    (home / "data" / "noop.txt").write_text("no data\n")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"  # a run of its own, even in a shared Redis
    env = worker_env(url, home, prefix)
    store = open_store(url, settings=Settings(home=home, store_url=url, redis_prefix=prefix))
    await store.open()
    worker = start_worker(env, home)
    try:
        payload = {"model_type": "noop", "data_path": "noop.txt", "hyperparameters": {}}
        trained = await until_done(
            store,
            (
                await store.submit(
                    NewJob(
                        job_type=JobType.TRAINING, queue=QUEUE, payload=payload, model_type="noop"
                    )
                )
            ).id,
        )
        if trained.state is not State.COMPLETED or trained.result is None:
            raise SystemExit(f"the no-op training job ended {trained.state}: {trained.error}")
        model_id = trained.result["model_id"]
        stop(worker)

        t = time.perf_counter()
        last = ""
        for i in range(jobs):
            last = (await store.submit(inference(model_id, i))).id
        enqueue_s = time.perf_counter() - t

        worker = start_worker(env, home)
        while (await store.queue_depths()).get(QUEUE, {}).get("pending", 0) >= jobs:
            await asyncio.sleep(POLL)
        t0 = time.perf_counter()
        await until_done(store, last)
        t1 = await all_completed_at(store, jobs + 1)  # + the training job
        e2e = await end_to_end(store, model_id, worker.pid, jobs, url)

        samples = []
        for i in range(round_trips + WARMUP):
            t = time.perf_counter()
            job = await store.submit(inference(model_id, i))
            done = await until_done(store, job.id)
            samples.append((time.perf_counter() - t) * 1000)
            if done.state is not State.COMPLETED:
                raise SystemExit(f"round trip {i} ended {done.state}: {done.error}")
        samples = sorted(samples[WARMUP:])
    finally:
        stop(worker)
        await store.close()
    return {
        "queue": "aijobs",
        "version": __version__,
        "jobs": jobs,
        "enqueue_per_s": round(jobs / enqueue_s, 1),
        "drain_per_s": round(jobs / (t1 - t0), 1),
        **e2e,
        "round_trips": round_trips,
        "rtt_p50_ms": round(quantile(samples, 0.50), 3),  # as every peer's
        "rtt_p99_ms": round(quantile(samples, 0.99), 3),
        "notes": (
            "one `aijobs worker` process; its inference child runs the no-op runtime; "
            f"AIJOBS_INFERENCE_PREFETCH={PREFETCH}; round trip: store.wait_terminal (pub/sub)"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    # On the event loop an API process submits from: uvicorn's, uvloop (uvicorn[standard]).
    print(json.dumps(uvloop.run(run(args.redis_url, args.jobs, args.round_trips))))


if __name__ == "__main__":
    main()
