"""The server commands: run the API, workers, everything at once (`up`), and write the demo data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from aijobs import logsafe
from aijobs.cli.processes import ProcessManager, interpreter_problems
from aijobs.settings import Settings, variable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logsafe.install()


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (AIJOBS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (AIJOBS_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    _logging()
    if host:  # what the app (in this process or uvicorn's workers) decides auth defaults by
        os.environ["AIJOBS_HOST"] = host
    settings = load_settings()
    with store_errors():  # refuse a bad store before binding the port, with a clear message
        asyncio.run(_check_store(settings))
    uvicorn.run(
        "aijobs.api.app:create_app",
        factory=True,
        host=settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


def worker(
    queue: Annotated[list[str], typer.Option("--queue", "-q", help="Queue to serve (repeatable)")],
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once")] = 1,
    runtime: Annotated[
        str | None,
        typer.Option(help="Serve the queues with this runtime plugin (name or module:Class)"),
    ] = None,
) -> None:
    """Serve one or more queues: claim jobs and run each in a child process."""
    import uvloop

    from aijobs.store import open_store
    from aijobs.worker.loop import Worker
    from aijobs.worker.preflight import problems

    _logging()
    settings = load_settings()
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

    with store_errors():
        # The loop the API runs on (uvicorn picks uvloop): a worker's round trip through Redis
        # and its inference child costs less CPU on it (docs/benchmarks.md).
        uvloop.run(main())


def load_settings() -> Settings:
    """The settings from the environment; a value not allowed: say which variable and why (not
    the value: it may be a secret), and exit 2."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {variable(str(error['loc'][0]))}: {error['msg']}", err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """A store that cannot be used (down, or configured so it could lose jobs): say so, exit 2."""
    from aijobs.errors import StoreUnavailable

    try:
        yield
    except StoreUnavailable as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None


async def _check_store(settings: Settings) -> None:
    """The store opens, and the API could be used as configured (auth: docs/security.md)."""
    from aijobs.api.auth import startup_problem
    from aijobs.store import open_store

    store = open_store(settings.resolved_store_url, settings=settings)
    await store.open()
    try:
        problem = await startup_problem(settings, store)
    finally:
        await store.close()
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)


def demo_data(directory: Annotated[Path, typer.Argument(help="Where to write")]) -> None:
    """Write the small, learnable datasets the API reference's examples name."""
    from aijobs.demo import write_demo_data

    for path in write_demo_data(directory):
        typer.echo(path)


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
    if host:
        os.environ["AIJOBS_HOST"] = host
    settings = load_settings()
    with store_errors():  # an API that would refuse to start is refused here, once
        asyncio.run(_check_store(settings))
    try:
        pythons = settings.queue_pythons
    except ValueError as exc:
        typer.echo(f"error: AIJOBS_QUEUE_PYTHON: {exc}", err=True)
        raise typer.Exit(2) from None
    if found := [
        p
        for q, py in pythons.items()
        for p in interpreter_problems(py, q, settings.allow_missing_gpu)
    ]:
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
    commands = {"api": [*me, "serve", "--host", settings.host]}
    commands["api"] += ["--port", str(port or settings.port)]
    for q in queues:
        python = str(pythons.get(q, sys.executable))
        commands[f"worker {q}"] = [python, "-m", "aijobs", "worker", "--queue", q]
    log.info("serving queues: %s", ", ".join(queues) or "none")
    for q, interpreter in pythons.items():
        log.info("queue %s runs on %s", q, interpreter)
    ProcessManager(commands, log, settings.shutdown_grace_seconds).run()


def register(app: typer.Typer) -> None:
    """Add the server commands to the `aijobs` app."""
    app.command()(serve)
    app.command()(worker)
    app.command("demo-data")(demo_data)
    app.command()(up)
