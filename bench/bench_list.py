"""Read/claim latency of the SQLite store with many stored jobs.

    .venv/bin/python bench/bench_list.py                # 1,000,000 jobs
    .venv/bin/python bench/bench_list.py --jobs 100000 --runs 100

Fills a fresh store file (schema from SQLiteStore.open(), rows bulk-inserted with sqlite3
executemany, so the store's triggers and indexes are maintained exactly as in production), then
times the store's own methods, each called --runs times, and prints median and p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aijobs.jobs import JobType, NewJob, State
from aijobs.store.sqlite import SQLiteStore

QUEUES = ["sklearn", "pytorch-2.1-gpu", "tensorflow-2.15-gpu", "pytorch-2.1-cpu"]
MODEL_TYPES = ["random_forest", "bert", "resnet", "logistic_regression"]
# state mix of the filled store: mostly history, a backlog, a few running
MIX = [
    (State.COMPLETED, 0.90),
    (State.FAILED, 0.05),
    (State.CANCELLED, 0.01),
    (State.PENDING, 0.035),
    (State.RUNNING, 0.005),
]
COLUMNS = (
    "id, job_type, queue, state, payload, model_type, model_id, description, priority, attempt, "
    "max_attempts, timeout_seconds, progress, metrics, history, result, error, owner, "
    "cancel_requested, created_at, updated_at, started_at, finished_at, token, lease_until, log"
)


def rows(n: int, sample: list[str], rng: random.Random) -> Any:
    now = int(time.time() * 1000)
    start = now - 30 * 86_400_000
    step = max(1, (now - start) // max(1, n))
    states = [s for s, _ in MIX]
    weights = [w for _, w in MIX]
    payload = json.dumps({"data_path": "/data/train.csv", "params": {"n_estimators": 100}})
    history = json.dumps([{"epoch": e, "loss": 1 / (e + 1)} for e in range(5)])
    for i in range(n):
        job_id = f"job_{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        if i % 997 == 0:
            sample.append(job_id)
        state = rng.choices(states, weights)[0]
        created = start + i * step
        started = created + 1000 if state is not State.PENDING else None
        finished = (
            created + rng.randint(5_000, 600_000)
            if state
            in (
                State.COMPLETED,
                State.FAILED,
                State.CANCELLED,
            )
            else None
        )
        running = state is State.RUNNING
        yield (
            job_id,
            "training" if i % 3 else "inference",
            QUEUES[i % len(QUEUES)],
            state.value,
            payload,
            MODEL_TYPES[i % len(MODEL_TYPES)],
            None,
            None,
            rng.choice((0, 0, 0, 1, 5)),
            0 if state is State.PENDING else 1,
            3,
            3600.0,
            1.0 if state is State.COMPLETED else 0.0,
            '{"accuracy":0.93}' if state is State.COMPLETED else "{}",
            history if state is State.COMPLETED else "[]",
            '{"model_id":"m","accuracy":0.93}' if state is State.COMPLETED else None,
            "boom" if state is State.FAILED else None,
            "worker-1" if started is not None else None,
            0,
            created,
            finished or created,
            started,
            finished,
            f"{uuid.uuid4().hex}:1" if running else None,
            now + 3_600_000 if running else None,
            ("log line\n" * 100) if i % 10 == 0 else None,  # ~1 KB log on 10% of jobs
        )


def fill(path: str, n: int, rng: random.Random) -> list[str]:
    sample: list[str] = []
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")  # bulk load only; the store itself runs FULL
    placeholders = ", ".join("?" * len(COLUMNS.split(",")))
    it = rows(n, sample, rng)
    batch = 100_000
    done = 0
    while done < n:
        chunk = [row for _, row in zip(range(min(batch, n - done)), it, strict=False)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES ({placeholders})", chunk)
        db.execute("COMMIT")
        done += len(chunk)
        print(f"\r  filled {done:,}/{n:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return sample


async def timed(runs: int, fn: Callable[[], Awaitable[Any]]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]


async def bench(path: str, n: int, runs: int, sample: list[str], rng: random.Random) -> None:
    store = SQLiteStore(path)
    await store.open()
    raw = sqlite3.connect(path)
    half = n // 2
    cases: list[tuple[str, int, Callable[[], Awaitable[Any]]]] = [
        ("get(id)", runs, lambda: store.get(rng.choice(sample))),
        (
            "list_jobs(state=completed, limit=100)",
            runs,
            lambda: store.list_jobs(State.COMPLETED, 100),
        ),
        ("list_jobs(state=pending, limit=100)", runs, lambda: store.list_jobs(State.PENDING, 100)),
        ("list_jobs() unfiltered, limit=100", runs, lambda: store.list_jobs()),
        (
            f"list_jobs(limit=100, offset={half:,})",
            max(5, runs // 5),
            lambda: store.list_jobs(limit=100, offset=half),
        ),
        (
            f"list_jobs(state=completed, offset={half:,})",
            max(5, runs // 5),
            lambda: store.list_jobs(State.COMPLETED, 100, half),
        ),
        ("queue_depths()", runs, store.queue_depths),
        (
            "recent_durations(training, bert, q)",
            runs,
            lambda: store.recent_durations(JobType.TRAINING, "bert", "pytorch-2.1-gpu"),
        ),
        ("claim(1 queue, limit=1)", runs, lambda: store.claim(["sklearn"], "bench", 60)),
        ("claim(3 queues, limit=4)", runs, lambda: store.claim(QUEUES[1:], "bench", 60, limit=4)),
        ("rescue_expired() (none due)", runs, store.rescue_expired),
        (
            "submit()",
            runs,
            lambda: store.submit(
                NewJob(job_type=JobType.TRAINING, queue="sklearn", payload={"x": 1})
            ),
        ),
        ("health()", runs, store.health),
    ]

    async def raw_count() -> None:  # what `total` would cost without the counts table
        raw.execute("SELECT count(*) FROM jobs WHERE state = 'completed'").fetchone()

    async def raw_count_all() -> None:
        raw.execute("SELECT count(*) FROM jobs").fetchone()

    cases += [
        ("(raw) COUNT(*) WHERE state=completed", max(5, runs // 5), raw_count),
        ("(raw) COUNT(*) all jobs", max(5, runs // 5), raw_count_all),
    ]
    print(f"\n{'operation':<44} {'runs':>5} {'median ms':>10} {'p99 ms':>9}")
    print("-" * 71)
    for name, k, fn in cases:
        await fn()  # warm-up
        xs = await timed(k, fn)
        print(f"{name:<44} {k:>5} {statistics.median(xs):>10.3f} {p99(xs):>9.3f}")
    raw.close()
    await store.close()


async def create_schema(path: str) -> None:
    store = SQLiteStore(path)  # the schema exactly as the store creates it
    await store.open()
    await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--path", help="store file (default: a fresh temporary file)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="aijobs-bench-") as tmp:
        path = args.path or str(Path(tmp) / "bench.db")
        if Path(path).exists():
            sys.exit(f"{path} exists: the bench needs a fresh file")
        asyncio.run(create_schema(path))
        t0 = time.perf_counter()
        sample = fill(path, args.jobs, rng)
        size = Path(path).stat().st_size / 2**20
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - t0:.1f} s ({size:,.0f} MiB)")
        print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}")
        asyncio.run(bench(path, args.jobs, args.runs, sample, rng))


if __name__ == "__main__":
    main()
