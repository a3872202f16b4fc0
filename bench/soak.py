"""A bounded soak of the whole system on SQLite or Redis, with faults: nothing accepted may be lost.

    .venv/bin/python bench/soak.py --store sqlite             # about 3 minutes
    .venv/bin/python bench/soak.py --store redis
    .venv/bin/python bench/soak.py --store redis --jobs 5000 --workers 6 --kill-every 3

Starts the API (`aijobs serve`) and several workers (`aijobs worker --queue sklearn`) as real
processes on a store of its own (SQLite: a file in a temporary home; Redis: its own redis-server
with AOF, appendfsync always), trains one small model, then submits thousands of short inference
jobs over HTTP from a few client threads (each submission retried through outages with one
Idempotency-Key, as the SDK does). Meanwhile it SIGKILLs a random worker every few seconds (and
starts a replacement), SIGKILLs the API at a third and at two thirds of the burst (and restarts
it on the same port), and on Redis SIGKILLs redis-server half-way and restarts it from its AOF.
Then it waits for every accepted job to end and prints:

    accepted    jobs the API acknowledged (distinct ids)
    completed   accepted jobs that ended completed
    failed      accepted jobs that ended failed (attempts spent by the kills)
    re-run      accepted jobs that started more than once (at-least-once execution, fenced)
    duplicated  accepted jobs whose result was committed more than once (must be 0)
    extra       jobs in the store that no client was told about (must be 0)
    lost        accepted jobs missing, or not finished by the deadline (must be 0)

and the store's invariant audit (each unfinished job in exactly the index its state names, the
counts exact). Exit status 1 if duplicated, extra or lost is not 0 or the audit finds a problem.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.harness import free_port
from tests.integration.invariants import accepted_commits, redis_problems, sqlite_problems
from tests.redis_server import RedisServer

from aijobs.demo import write_demo_data
from aijobs.jobs import TERMINAL, State
from aijobs.store import JobStore, open_store

PREFIX = "soak"
API_KILLS_AT = (1 / 3, 2 / 3)  # fractions of the burst accepted when the API is SIGKILLed
REDIS_KILL_AT = 1 / 2


class Soak:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.api_port = free_port()
        self.redis = RedisServer(root / "redis") if args.store == "redis" else None
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.accepted: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.kills = Counter[str]()
        self.retries = 0
        self.rng = random.Random(args.seed)
        self.home = root / "home"
        self.data = root / "data"
        self.data.mkdir()
        write_demo_data(self.data)

    @property
    def store_url(self) -> str:
        if self.redis is not None:
            return self.redis.url
        return f"sqlite:///{self.home / 'aijobs.db'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # -- processes -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AIJOBS_HOME": str(self.home),
            "AIJOBS_DATA_ROOTS": str(self.data),
            "AIJOBS_STORE_URL": self.store_url,
            "AIJOBS_REDIS_PREFIX": PREFIX,
            "AIJOBS_LEASE_SECONDS": str(self.args.lease),
            "AIJOBS_WORKER_TTL_SECONDS": "5",
            "AIJOBS_KILL_GRACE_SECONDS": "1",
            "AIJOBS_MAX_ATTEMPTS": str(self.args.max_attempts),
        }

    def spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / log, "ab") as out:  # the child keeps its own copy of the fd
            return subprocess.Popen(
                [sys.executable, "-m", "aijobs", *args],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start_api(self) -> None:
        self.api = self.spawn("serve", "--port", str(self.api_port), log="api.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        sys.exit("the API did not start")

    def start_worker(self) -> None:
        n = len(self.workers)
        self.workers.append(self.spawn("worker", "--queue", "sklearn", log=f"worker-{n}.log"))

    def shutdown(self) -> None:
        # The store last: workers and the API shut down cleanly while it still answers.
        procs = [p for p in [*self.workers, self.api] if p is not None and p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.redis is not None:
            self.redis.stop(signal.SIGKILL)

    # -- load and faults -----------------------------------------------------------------------
    def post(self, path: str, body: dict[str, Any]) -> str:
        """Submit, retrying through outages (503, or no API listening) with one Idempotency-Key."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                r = httpx.post(
                    self.url + path, json=body, headers={"Idempotency-Key": key}, timeout=10
                )
                if r.status_code == 200:
                    job_id: str = r.json()["job_id"]
                    return job_id
                if r.status_code != 503:
                    raise RuntimeError(f"{path}: {r.status_code} {r.text}")
            with self.lock:
                self.retries += 1
            time.sleep(0.2)
        raise RuntimeError("no submission accepted for 120 s")

    def train_model(self) -> str:
        job = self.post(
            "/jobs/training", {"model_type": "logistic_regression", "data_path": "tabular_data.csv"}
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.url}/jobs/{job}/status", timeout=10).json()
            if body["status"] == "completed":
                model_id: str = body["result"]["model_id"]
                return model_id
            if body["status"] in TERMINAL:
                sys.exit(f"training the soak model failed: {body}")
            time.sleep(0.2)
        sys.exit("training the soak model did not finish")

    def client(self, n: int, model_id: str) -> None:
        rows = ["5.1,3.5,1.4,0.2", "6.7,3.0,5.2,2.3", "5.9,3.0,4.2,1.5"]
        for i in range(n):
            body = {"model_id": model_id, "input_data": rows[i % len(rows)]}
            job_id = self.post("/jobs/inference", body)
            with self.lock:
                self.accepted.append(job_id)
            if i % 50 == 0:
                time.sleep(self.rng.random() * 0.2)  # bursts, not a flat rate

    def chaos(self) -> None:
        api_kills = list(API_KILLS_AT)
        redis_kills = [REDIS_KILL_AT] if self.redis is not None else []
        next_kill = time.monotonic() + self.args.kill_every
        while not self.stop.wait(0.2):
            with self.lock:
                progress = len(self.accepted) / self.args.jobs
            if api_kills and progress >= api_kills[0]:
                api_kills.pop(0)
                self.kill_api()
            if redis_kills and progress >= redis_kills[0]:
                redis_kills.pop(0)
                self.kill_redis()
            if time.monotonic() >= next_kill:
                next_kill = time.monotonic() + self.args.kill_every * (0.5 + self.rng.random())
                self.kill_a_worker()

    def kill_api(self) -> None:
        print(f"  [{self.elapsed():6.1f}s] SIGKILL the API, restart it on the same port")
        assert self.api is not None
        self.api.send_signal(signal.SIGKILL)
        self.api.wait()
        self.kills["API"] += 1
        time.sleep(0.5)
        self.start_api()

    def kill_redis(self) -> None:
        print(f"  [{self.elapsed():6.1f}s] SIGKILL redis-server, restart it from its AOF")
        assert self.redis is not None
        self.redis.restart(signal.SIGKILL, down_for=1.0)
        self.kills["Redis"] += 1

    def kill_a_worker(self) -> None:
        alive = [w for w in self.workers if w.poll() is None]
        if alive:
            self.rng.choice(alive).send_signal(signal.SIGKILL)
            self.kills["worker"] += 1
            self.start_worker()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def open_store(self) -> JobStore:
        options = {"prefix": PREFIX} if self.redis else {}
        return open_store(self.store_url, **options)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> int:
        self.t0 = time.monotonic()
        if self.redis is not None:
            self.redis.start()
        self.start_api()
        for _ in range(self.args.workers):
            self.start_worker()
        model_id = self.train_model()
        print(
            f"  [{self.elapsed():6.1f}s] model trained; {self.args.jobs} jobs from "
            f"{self.args.clients} clients, a worker SIGKILLed every ~{self.args.kill_every}s"
        )
        per_client = [self.args.jobs // self.args.clients] * self.args.clients
        per_client[0] += self.args.jobs - sum(per_client)
        clients = [threading.Thread(target=self.client, args=(n, model_id)) for n in per_client]
        chaos = threading.Thread(target=self.chaos)
        for t in [*clients, chaos]:
            t.start()
        for t in clients:
            t.join()
        print(f"  [{self.elapsed():6.1f}s] all {len(self.accepted)} submissions accepted")
        self.stop.set()
        chaos.join()
        asyncio.run(self.wait_all(deadline=self.args.drain_seconds))
        print(f"  [{self.elapsed():6.1f}s] drained")
        return self.report()

    async def wait_all(self, deadline: float) -> None:
        """Until no job is pending or running (or the deadline)."""
        store = self.open_store()
        await store.open()
        end = time.monotonic() + deadline
        try:
            while time.monotonic() < end:
                with contextlib.suppress(Exception):  # the store may be restarting
                    _, pending = await store.list_jobs(State.PENDING, limit=1)
                    _, running = await store.list_jobs(State.RUNNING, limit=1)
                    if pending == running == 0:
                        return
                await asyncio.sleep(0.5)
        finally:
            await store.close()

    async def tally(self, accepted: set[str]) -> tuple[Counter[str], int, int, int]:
        """(final states, re-run, lost, extra) of the accepted jobs, read from the store."""
        store = self.open_store()
        await store.open()
        try:
            states: Counter[str] = Counter()
            rerun = lost = 0
            for job_id in accepted:
                try:
                    job = await store.get(job_id)
                except Exception:
                    lost += 1
                    continue
                if job.state not in TERMINAL:
                    lost += 1
                states[job.state.value] += 1
                rerun += job.attempt > 1
            stored: set[str] = set()
            offset = 0
            while page := (await store.list_jobs(limit=1000, offset=offset))[0]:
                stored |= {j.id for j in page}
                offset += len(page)
            extra = len(stored - accepted) - 1  # the model's training job
        finally:
            await store.close()
        return states, rerun, lost, extra

    def report(self) -> int:
        accepted = set(self.accepted)
        states, rerun, lost, extra = asyncio.run(self.tally(accepted))
        if self.redis is not None:
            problems = redis_problems(self.redis.url, PREFIX)
        else:
            problems = sqlite_problems(self.home / "aijobs.db")
        commits: Counter[str] = Counter()
        for path in self.home.glob("worker-*.log"):
            commits.update(accepted_commits(path.read_text(errors="replace")))
        duplicated = sum(1 for job_id in accepted if commits[job_id] > 1)
        faults = ", ".join(f"{n} {what} SIGKILL(s)" for what, n in self.kills.items())
        print()
        print(f"  store        {self.args.store}")
        print(f"  date         {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"  elapsed      {self.elapsed():.1f} s")
        print(f"  faults       {faults} (each restarted)")
        print(f"  retries      {self.retries} client retries (503 or connection refused)")
        print(f"  accepted     {len(accepted)}")
        print(f"  completed    {states['completed']}")
        print(f"  failed       {states['failed']}")
        print(f"  re-run       {rerun}")
        print(f"  duplicated   {duplicated}")
        print(f"  extra        {extra}")
        print(f"  lost         {lost}")
        print(f"  audit        {len(problems)} problem(s)")
        for p in problems[:20]:
            print(f"    {p}")
        return 1 if duplicated or extra or lost or problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=6.0, help="seconds between kills")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--drain-seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs and the store")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix=f"aijobs-soak-{args.store}-"))
    soak = Soak(args, root)
    print(f"soak ({args.store}): {root}")
    try:
        code = soak.run()
    finally:
        soak.shutdown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
