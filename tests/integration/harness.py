"""Real processes for integration tests: the API and workers as a user would start them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
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
            "AIJOBS_HYPERPARAMETER_CEILINGS": "n_estimators=1000000",  # VERY_SLOW's forest
            "AIJOBS_RETRY_BACKOFF_SECONDS": "0.5",  # scaled down with the lease
            **self.env_overrides,
        }

    def _spawn(
        self,
        *args: str,
        log: str,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / log, "ab") as out:  # the child keeps its own copy of the fd
            return subprocess.Popen(
                [*wrapper, sys.executable, "-m", "aijobs", *args],
                env={**self.env, **(env or {})},
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

    def worker_ids(self) -> set[str]:
        return {w["worker_id"] for w in self.get("/workers").json()["workers"]}

    def start_worker(
        self,
        *queues: str,
        concurrency: int = 1,
        runtime: str | None = None,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker, once it registered its heartbeat. `wrapper` runs it inside another command
        (a PID namespace, say: then its pid is not ours to see); `env` adds to its environment."""
        args = [a for q in queues for a in ("--queue", q)]
        args += ["--concurrency", str(concurrency)] + (["--runtime", runtime] if runtime else [])
        before = self.worker_ids()
        proc = self._spawn("worker", *args, log="worker.log", wrapper=wrapper, env=env)
        self.workers.append(proc)
        deadline = time.monotonic() + 90  # preflight imports the runtime: slow on a busy host
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc
            live = self.get("/workers").json()["workers"]
            new = [w for w in live if w["worker_id"] not in before]
            if any(w["pid"] == proc.pid or wrapper for w in new):
                return proc
            time.sleep(0.1)
        raise RuntimeError("worker did not register")

    def worker_log(self) -> str:
        """Everything the workers of this system logged so far."""
        return (self.home / "worker.log").read_text(errors="replace")

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


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its frozen parent, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def child_pids(job_id: str) -> list[int]:
    """PIDs of live processes whose command line names this job (its training child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if job_id in cmdline and "aijobs.worker.child" in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Partition:
    """A TCP proxy in front of a server that can be cut: while cut, it accepts and holds
    connections but forwards no byte either way (a black hole, as a network partition looks to
    both ends: no reset, only silence); healed, it forwards again what was held."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:  # the pump of the other direction may close both sockets at any moment
            src.settimeout(0.05)
            while not self.closed.is_set():
                if not self.flowing.wait(0.05):
                    continue  # cut: leave the bytes where they are
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()


def skewed_clock_env(tmp: Path, seconds: float) -> dict[str, str]:
    """The environment for a Python process whose wall clock (time.time) is `seconds` off,
    as on a host whose clock is wrong; its monotonic clock is left alone, as it would be."""
    folder = tmp / f"clock{seconds:+.0f}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import time\n"
        f"_SKEW = {seconds!r}\n"
        "_time, _time_ns = time.time, time.time_ns\n"
        "time.time = lambda: _time() + _SKEW\n"
        "time.time_ns = lambda: _time_ns() + int(_SKEW * 1e9)\n"
    )
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(folder) + (os.pathsep + path if path else "")}
