"""The command line: run the API, workers, everything at once, and write the demo data.

The job commands (submit, status, wait, list, cancel, logs, models, queues) talk to a running
API; they live in aijobs.cli_jobs and are registered below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from aijobs import cli_jobs
from aijobs.settings import Settings

app = typer.Typer(help="aijobs: an HTTP job queue for machine-learning work.", no_args_is_help=True)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (AIJOBS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (AIJOBS_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    _logging()
    settings = Settings()
    with _store_errors():  # refuse a bad store before binding the port, with a clear message
        asyncio.run(_check_store(settings))
    uvicorn.run(
        "aijobs.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


@app.command()
def worker(
    queue: Annotated[list[str], typer.Option("--queue", "-q", help="Queue to serve (repeatable)")],
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once")] = 1,
    runtime: Annotated[
        str | None,
        typer.Option(help="Serve the queues with this runtime plugin (name or module:Class)"),
    ] = None,
) -> None:
    """Serve one or more queues: claim jobs and run each in a child process."""
    from aijobs.store import open_store
    from aijobs.worker.loop import Worker
    from aijobs.worker.preflight import problems

    _logging()
    settings = Settings()
    if found := problems(queue, settings.allow_missing_gpu, runtime_override=runtime):
        for problem in found:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)

    async def main() -> None:
        store = open_store(settings.resolved_store_url, settings=settings)
        await store.open()
        try:
            await Worker(settings, store, queue, concurrency, runtime).run()
        finally:
            await store.close()

    with _store_errors():
        asyncio.run(main())


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """A store that cannot be used (down, or configured so it could lose jobs): say so, exit 2."""
    from aijobs.errors import StoreUnavailable

    try:
        yield
    except StoreUnavailable as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None


async def _check_store(settings: Settings) -> None:
    from aijobs.store import open_store

    store = open_store(settings.resolved_store_url, settings=settings)
    await store.open()
    await store.close()


@app.command("demo-data")
def demo_data(directory: Annotated[Path, typer.Argument(help="Where to write")]) -> None:
    """Write the small, learnable datasets the spec's examples name."""
    from aijobs.demo import write_demo_data

    for path in write_demo_data(directory):
        typer.echo(path)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Bind address (AIJOBS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (AIJOBS_PORT)")] = None,
) -> None:
    """The API plus one worker for every queue this environment can serve, on the embedded store.

    A queue named in AIJOBS_QUEUE_PYTHON gets its worker from that interpreter (another
    environment), whether or not this one could serve it.
    """
    from aijobs import routing
    from aijobs.demo import write_demo_data
    from aijobs.worker.preflight import servable

    _logging()
    log = logging.getLogger("aijobs.up")
    settings = Settings()
    try:
        pythons = settings.queue_pythons
    except ValueError as exc:
        typer.echo(f"error: AIJOBS_QUEUE_PYTHON: {exc}", err=True)
        raise typer.Exit(2) from None
    if found := [p for q, py in pythons.items() for p in _problems_with(py, q, settings)]:
        for problem in found:
            typer.echo(f"error: AIJOBS_QUEUE_PYTHON: {problem}", err=True)
        raise typer.Exit(2)
    root = settings.roots[0]
    if not root.exists() or not any(root.iterdir()):
        root.mkdir(parents=True, exist_ok=True)
        write_demo_data(root)
        log.info("demo data written to %s", root)
    here = set(servable(settings.allow_missing_gpu))
    queues = [q for q in routing.QUEUES if q in here or q in pythons]
    me = [sys.executable, "-m", "aijobs"]
    commands = {"api": [*me, "serve", "--host", host or settings.host]}
    commands["api"] += ["--port", str(port or settings.port)]
    for q in queues:
        python = str(pythons.get(q, sys.executable))
        commands[f"worker {q}"] = [python, "-m", "aijobs", "worker", "--queue", q]
    log.info("serving queues: %s", ", ".join(queues) or "none")
    for q, interpreter in pythons.items():
        log.info("queue %s runs on %s", q, interpreter)
    Supervisor(commands, log, settings.shutdown_grace_seconds).run()


# Run by another environment's interpreter: can it serve the queue (aijobs and the framework
# installed there, a GPU for a GPU queue)? Prints the preflight's problems as JSON.
_PROBE = (
    "import json, sys\n"
    "from aijobs.worker.preflight import problems\n"
    "print(json.dumps(problems([sys.argv[1]], sys.argv[2] == '1')))\n"
)


def _problems_with(python: Path, queue: str, settings: Settings) -> list[str]:
    """Why `python` cannot serve `queue` (empty when it can), asked of that interpreter."""
    import json

    allow = "1" if settings.allow_missing_gpu else "0"
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


class Supervisor:
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
            for name, proc in list(self.procs.items()):
                if proc.poll() is None or self.stopping:
                    continue
                recent = [t for t in restarts.get(name, []) if time.monotonic() - t < 60]
                restarts[name] = [*recent, time.monotonic()]
                self.log.warning("%s exited with %s; restarting", name, proc.returncode)
                if len(recent) >= 5:
                    time.sleep(5)  # crash loop: slow down
                self._start(name)
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


cli_jobs.register(app)  # submit, status, wait, list, cancel, logs, models, queues; --url, --json

if __name__ == "__main__":
    app()
