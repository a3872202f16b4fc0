"""The protocol every peer adapter follows; each `<name>_bench.py` supplies only the library calls.

An adapter is a class with:

- `name`, `version`, `notes` (the worker settings used, polling intervals chosen);
- `worker_cmd()`: argv of ONE worker process, the library's own worker CLI, run with the
  adapter's directory as its working directory and `BENCH_REDIS_URL` in its environment;
- `async enqueue(i)`: the library's normal enqueue call for `noop(i)`; returns a handle;
- `pending(r)`: jobs still waiting in the queue, read with the raw (sync) client `r`;
- `done_many(r, handles)`: for each handle, is its result/state stored as done (raw reads);
- `async round_trip(i)`: enqueue `noop(i)` and wait with the library's blocking-result call;
  returns the result (checked to be `i`);
- optional `async open()` / `async close()`.

`run(adapter)` then measures, the same way for every peer:

1. flush the DB; enqueue N jobs one by one -> enqueue_per_s;
2. drain: start the worker; t0 = first time the pending count is seen below N (raw reads
   every 0.5 ms); then the pending count every 5 ms until it is 0, then the last job's done
   state every 0.5 ms; t1 = the last job seen done (one FIFO worker: it finishes last). Every
   job is then checked done (else exit 1). drain_per_s = N / (t1 - t0): the worker's import
   and start-up are outside the window, for every peer alike;
3. end to end, the worker still running (and warm, idle): t0, then N more jobs enqueued one at
   a time by this process while the worker drains them; after the last enqueue the pending
   count every 5 ms until it is 0, then the last job's done state every 0.5 ms; t1 = every job
   seen done. e2e_per_s = N / (t1 - t0); e2e_tail_ms = t1 - the last enqueue's return (near 0
   when the worker keeps up with the producer). Over the same window, the CPU time (user +
   system, bench/peers/_cpu.py) of this process (the producer), of the worker and every process
   below it, and of the redis-server, each divided by N: producer_, worker_, redis_cpu_ms_per_job
   and their sum cpu_ms_per_job;
4. M sequential round trips with the worker still running; the first 10 are warm-up;
5. SIGTERM the worker's process group, SIGKILL after 10 s; print one JSON line.

An adapter run in several settings (Huey's) takes `--variant`, the key of its VARIANTS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import redis
from _cpu import end_to_end_window, per_job_ms

HERE = Path(__file__).resolve().parent
WARMUP = 10
START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 600.0


def noop(i: int) -> int:
    return i


def venv_bin(name: str) -> str:
    """A console script of the interpreter's own environment (the bench venv)."""
    return str(Path(sys.executable).parent / name)


def redis_url() -> str:
    """The benchmark's Redis, for module-level library objects that the worker imports too.

    The worker finds it in its environment; the adapter's own process reads it from its command
    line, before `parse_args` runs. Never a default: a stray default would hit another Redis.
    """
    if "BENCH_REDIS_URL" not in os.environ:
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--redis-url", required=True)
        os.environ["BENCH_REDIS_URL"] = p.parse_known_args()[0].redis_url
    return os.environ["BENCH_REDIS_URL"]


class Adapter(Protocol):
    name: str
    version: str
    notes: str

    def worker_cmd(self) -> list[str]: ...

    async def enqueue(self, i: int) -> Any: ...

    def pending(self, r: redis.Redis) -> int: ...

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]: ...

    async def round_trip(self, i: int) -> Any: ...


def parse_args(variants: Iterable[str] = ()) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--round-trips", type=int, default=300)
    if variants:
        p.add_argument("--variant", choices=list(variants), required=True)
    args = p.parse_args()
    if args.round_trips <= WARMUP:
        p.error(f"--round-trips must be more than the {WARMUP} warm-up trips")
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    return args


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class Worker:
    """One worker process in its own process group (CLIs that fork children go down together)."""

    def __init__(self, cmd: list[str]) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix="bench-worker-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            cmd,
            cwd=HERE,
            env={**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            fail(f"worker exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        # children the CLI forked may outlive it: finish the group off
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def fail(msg: str) -> None:
    print(f"FAILED: {msg}", file=sys.stderr)
    raise SystemExit(1)


def _wait_drain(adapter: Adapter, r: redis.Redis, worker: Worker, handles: list[Any]) -> float:
    _wait_first_claim(adapter, r, worker, len(handles))
    t0 = time.perf_counter()
    _wait_last_done(adapter, r, worker, handles[-1])
    return _all_done_at(adapter, r, handles) - t0


def _wait_first_claim(adapter: Adapter, r: redis.Redis, worker: Worker, n: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while adapter.pending(r) >= n:
        if time.monotonic() > deadline:
            worker.check_alive()
            fail(f"worker took no job in {START_TIMEOUT_S:.0f} s:\n{worker.tail()}")
        time.sleep(0.0005)


def _wait_last_done(adapter: Adapter, r: redis.Redis, worker: Worker, last: Any) -> None:
    """Until nothing is pending and the last job enqueued is done (the pending count is read
    every 5 ms only: this process's reads are charged to it, and Redis's, in the CPU figures)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    checks = 0
    while adapter.pending(r) > 0:
        time.sleep(0.005)
        checks += 1
        if checks % 200 == 0:
            worker.check_alive()
            if time.monotonic() > deadline:
                fail("drain timed out")
    while not adapter.done_many(r, [last])[0]:
        time.sleep(0.0005)
        checks += 1
        if checks % 2000 == 0:
            worker.check_alive()
            if time.monotonic() > deadline:
                fail("drain timed out")


def _all_done_at(adapter: Adapter, r: redis.Redis, handles: list[Any]) -> float:
    """The perf_counter time by which every job is seen done (fails if some never are)."""
    t1 = time.perf_counter()
    # A worker that runs several jobs at once (threads, asyncio tasks) may finish a few just
    # before the last one: then t1 is when the stragglers are seen done, within a grace period.
    missing = _missing(adapter, r, handles)
    grace = time.monotonic() + 10.0
    while missing and time.monotonic() < grace:
        time.sleep(0.0005)
        missing = _missing(adapter, r, missing)
        t1 = time.perf_counter()
    if missing:
        describe = getattr(adapter, "describe", None)
        shown = [repr(h) if describe is None else describe(r, h) for h in missing[:3]]
        fail(
            f"{len(missing)} of {len(handles)} jobs not done 10 s after the last one was, "
            f"e.g. {shown}"
        )
    return t1


def _missing(adapter: Adapter, r: redis.Redis, handles: list[Any]) -> list[Any]:
    missing = []
    for k in range(0, len(handles), 1000):
        chunk = handles[k : k + 1000]
        missing += [h for h, ok in zip(chunk, adapter.done_many(r, chunk), strict=True) if not ok]
    return missing


async def _end_to_end(
    adapter: Adapter, r: redis.Redis, worker: Worker, first: int, n: int
) -> dict[str, float]:
    """Step 3 of the module's docstring: jobs first .. first + n - 1 submitted while it drains."""
    cpu = end_to_end_window(worker.proc.pid, int(r.info("server")["process_id"]))
    cpu.start()
    t0 = time.perf_counter()
    handles = [await adapter.enqueue(first + k) for k in range(n)]
    submitted = time.perf_counter()
    _wait_last_done(adapter, r, worker, handles[-1])
    t1 = _all_done_at(adapter, r, handles)
    spent = cpu.stop()
    return {
        "e2e_per_s": round(n / (t1 - t0), 1),
        "e2e_tail_ms": round((t1 - submitted) * 1000, 2),
        **per_job_ms(spent, n),
    }


async def _measure(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    n, m = args.jobs, args.round_trips
    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    if hasattr(adapter, "open"):
        await adapter.open()
    t = time.perf_counter()
    handles = [await adapter.enqueue(i) for i in range(n)]
    enqueue_s = time.perf_counter() - t
    if adapter.pending(r) != n:
        fail(f"{adapter.pending(r)} jobs pending after enqueueing {n}")

    worker = Worker(adapter.worker_cmd())
    try:
        drain_s = _wait_drain(adapter, r, worker, handles)
        e2e = await _end_to_end(adapter, r, worker, n, n)
        latencies = []
        for k in range(m):
            i = 2 * n + k
            t = time.perf_counter()
            result = await adapter.round_trip(i)
            latencies.append((time.perf_counter() - t) * 1000)
            if result != i:
                fail(f"round trip {k}: got {result!r}, expected {i}")
        worker.check_alive()
    finally:
        worker.stop()
        if hasattr(adapter, "close"):
            await adapter.close()
        r.close()
    kept = sorted(latencies[WARMUP:])
    return {
        "queue": adapter.name,
        "version": adapter.version,
        "jobs": n,
        "enqueue_per_s": round(n / enqueue_s, 1),
        "drain_per_s": round(n / drain_s, 1),
        **e2e,
        "round_trips": m,
        "rtt_p50_ms": round(quantile(kept, 0.50), 3),
        "rtt_p99_ms": round(quantile(kept, 0.99), 3),
        "notes": adapter.notes,
    }


def run(adapter: Adapter, args: argparse.Namespace) -> None:
    result = asyncio.run(_measure(adapter, args))
    print(json.dumps(result), flush=True)
