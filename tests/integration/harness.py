"""Real processes for integration tests: the API and workers as a user would start them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "cancelled"}

# Training jobs on the demo data, by how long they run on two cores.
SLOW: dict[str, Any] = {  # several seconds of real training: longer than a lease
    "model_type": "random_forest",
    "data_path": "slow.csv",
    "hyperparameters": {"n_estimators": 600, "random_state": 0},
}
VERY_SLOW = {**SLOW, "hyperparameters": {"n_estimators": 100_000, "random_state": 0}}
QUICK = {"model_type": "logistic_regression", "data_path": "tabular_data.csv"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class System:
    home: Path
    data: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AIJOBS_HOME": str(self.home),
            "AIJOBS_DATA_ROOTS": str(self.data),
            "AIJOBS_LEASE_SECONDS": "3",
            "AIJOBS_WORKER_TTL_SECONDS": "3",
            "AIJOBS_KILL_GRACE_SECONDS": "1",
            "AIJOBS_SHUTDOWN_GRACE_SECONDS": "10",
            **self.env_overrides,
        }

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / log, "ab") as out:  # the child keeps its own copy of the fd
            return subprocess.Popen(
                [sys.executable, "-m", "aijobs", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start_api(self, processes: int = 1) -> None:
        args = ("--port", str(self.port), "--workers", str(processes))
        self.api = self._spawn("serve", *args, log="api.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"API exited: {(self.home / 'api.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("API did not start")

    def start_worker(
        self, *queues: str, concurrency: int = 1, runtime: str | None = None
    ) -> subprocess.Popen[bytes]:
        args = [a for q in queues for a in ("--queue", q)]
        args += ["--concurrency", str(concurrency)] + (["--runtime", runtime] if runtime else [])
        proc = self._spawn("worker", *args, log="worker.log")
        self.workers.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # ready when it registered its heartbeat
            if proc.poll() is not None:
                return proc
            live = self.get("/workers").json()["workers"]
            if any(w["pid"] == proc.pid for w in live):
                return proc
            time.sleep(0.1)
        raise RuntimeError("worker did not register")

    def stop(self, proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in [*self.workers, self.api]:
            self.stop(proc)
        self.workers.clear()

    # -- HTTP ----------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kw)

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(self.url + path, timeout=10)

    def submit(self, path: str, body: dict[str, Any]) -> str:
        r = self.post(path, json=body)
        assert r.status_code == 200, r.text
        job_id: str = r.json()["job_id"]
        return job_id

    def status(self, job_id: str) -> dict[str, Any]:
        r = self.get(f"/jobs/{job_id}/status")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait(
        self, job_id: str, states: Iterable[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(job_id)
            if body["status"] in wanted:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{job_id} still {body['status']} after {timeout}s: {body}")
            time.sleep(0.05)


def child_pids(job_id: str) -> list[int]:
    """PIDs of live processes whose command line names this job (its training child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
        if job_id in cmdline and "aijobs.worker.child" in cmdline and not zombie:
            found.append(int(entry.name))
    return found


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
