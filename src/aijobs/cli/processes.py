"""The processes behind `aijobs up`: keep each one running, and ask another interpreter whether it
can serve a queue before starting a worker on it."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from pathlib import Path

# Run by another environment's interpreter: can it serve the queue (aijobs and the framework
# installed there, a GPU for a GPU queue)? Prints the preflight's problems as JSON.
_PROBE = (
    "import json, sys\n"
    "from aijobs.worker.preflight import problems\n"
    "print(json.dumps(problems([sys.argv[1]], sys.argv[2] == '1')))\n"
)


def interpreter_problems(python: Path, queue: str, allow_missing_gpu: bool) -> list[str]:
    """Why `python` cannot serve `queue` (empty when it can), asked of that interpreter."""
    allow = "1" if allow_missing_gpu else "0"
    try:
        out = subprocess.run(
            [str(python), "-c", _PROBE, queue, allow],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return [f"{python} (for queue {queue!r}) cannot be run: {exc}"]
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"{python} (for queue {queue!r}) cannot run aijobs: {last}; install aijobs there"]
    try:
        found: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [f"{python} (for queue {queue!r}) gave no answer to the preflight check"]
    return [f"{python}: {p}" for p in found]


class ProcessManager:
    """Keeps a set of processes running; restarts one that dies; stops all on Ctrl-C."""

    def __init__(self, commands: dict[str, list[str]], log: logging.Logger, grace: float) -> None:
        self.commands = commands
        self.log = log
        self.grace = grace
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        restarts: dict[str, list[float]] = {}
        for name in self.commands:
            self._start(name)
        while not self.stopping:
            time.sleep(0.5)
            self._restart_exited(restarts)
        self._stop_all()

    def _restart_exited(self, restarts: dict[str, list[float]]) -> None:
        """Start again every process that has exited; `restarts` holds each one's restart times."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is None or self.stopping:
                continue
            recent = [t for t in restarts.get(name, []) if time.monotonic() - t < 60]
            restarts[name] = [*recent, time.monotonic()]
            self.log.warning("%s exited with %s; restarting", name, proc.returncode)
            if len(recent) >= 5:
                time.sleep(5)  # crash loop: slow down
            self._start(name)

    def _stop_all(self) -> None:
        self.log.info("stopping %d processes", len(self.procs))
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 5
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def _start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands[name])
        self.log.info("started %s (pid %d)", name, self.procs[name].pid)
