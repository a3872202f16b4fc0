"""What the worker's unit tests put in place of time and of child processes: a clock that jumps,
and children that speak the worker's protocol but run nothing. Everything else is real: the
worker, its SQLite store, its commits, its GPU hand-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aijobs.jobs import JobType, ModelRecord, NewJob, now
from aijobs.settings import Settings
from aijobs.store.sqlite import SQLiteStore
from aijobs.store.sqlite.database import BUSY_TIMEOUT
from aijobs.worker.loop import Worker
from aijobs.worker.protocol import (
    EXIT_OK,
    InferenceReply,
    InferenceRequest,
    ProgressReport,
    TrainingOutcome,
    TrainingSpec,
)
from aijobs.worker.running import Clock


class FakeClock(Clock):
    """Sleeps take no time: they move the clock on (and run `on_sleep`, a test's way to end
    an outage partway)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.on_sleep: Callable[[], Awaitable[None]] | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept.append(seconds)
        if self.on_sleep is not None:
            await self.on_sleep()
        await asyncio.sleep(0)


@dataclass
class FakeTrainingChild:
    """A training child that trains nothing: it reads its spec, leaves a model, and exits
    when the test says so (EXIT_OK, with an outcome, unless told otherwise)."""

    spec_path: Path
    log_path: Path
    on_progress: Callable[[ProgressReport], None]
    gpu: str | None
    spec: TrainingSpec | None = None
    exit: asyncio.Future[int] = field(default_factory=asyncio.Future)

    async def start(self) -> None:
        self.spec = TrainingSpec.read(self.spec_path)
        Path(self.spec.model_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.spec.model_dir) / "model.bin").write_bytes(b"weights")

    async def wait(self) -> int:
        code = await self.exit
        if code == EXIT_OK:
            TrainingOutcome({"accuracy": 1.0}, {}, "fake", "1").write(self.spec_path)
        return code

    async def kill(self, grace: float) -> None:
        if not self.exit.done():
            self.exit.set_result(-9)

    def end(self, code: int = EXIT_OK) -> None:
        self.exit.set_result(code)


class TrainingChildren(list[FakeTrainingChild]):
    """Spawns fake training children and keeps them, in the order they started."""

    def __call__(
        self,
        spec_path: Path,
        log_path: Path,
        on_progress: Callable[[ProgressReport], None],
        gpu: str | None,
    ) -> FakeTrainingChild:
        child = FakeTrainingChild(spec_path, log_path, on_progress, gpu)
        self.append(child)
        return child

    def of(self, job_id: str) -> FakeTrainingChild:
        return next(c for c in self if c.spec is not None and c.spec.job_id == job_id)


class FakeInferenceChild:
    """An inference child that answers every request with its input, once `answering` is set."""

    def __init__(self) -> None:
        self.answering = asyncio.Event()
        self.answering.set()
        self.requests: list[InferenceRequest] = []
        self.batches: list[int] = []  # the number of requests of each send
        self.skipped: list[asyncio.Future[InferenceReply]] = []
        self._replies: list[asyncio.Future[InferenceReply]] = []
        self._answerers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        pass

    async def send(self, requests: list[InferenceRequest]) -> list[asyncio.Future[InferenceReply]]:
        loop = asyncio.get_running_loop()
        replies = [loop.create_future() for _ in requests]
        self.requests += requests
        self.batches.append(len(requests))
        self._replies += replies
        work = list(zip(requests, replies, strict=True))
        self._answerers.add(task := asyncio.create_task(self._answer(work)))
        task.add_done_callback(self._answerers.discard)
        return replies

    async def _answer(
        self, work: list[tuple[InferenceRequest, asyncio.Future[InferenceReply]]]
    ) -> None:
        await self.answering.wait()
        for n, (request, reply) in enumerate(work):
            output = {"predictions": request.input_data, "cached_model": False}
            reply.set_result(InferenceReply(n, ok=True, output=output, elapsed_ms=1.0))

    def working_on(self) -> asyncio.Future[InferenceReply] | None:
        return next((r for r in self._replies if not r.done()), None)

    def skip(self, reply: asyncio.Future[InferenceReply]) -> None:
        self.skipped.append(reply)

    async def kill(self, grace: float = 1.0) -> None:
        pass


@dataclass
class Setup:
    store: SQLiteStore
    worker: Worker
    clock: FakeClock
    children: TrainingChildren
    inference: FakeInferenceChild


@asynccontextmanager
async def setup(
    home: Path,
    queues: list[str],
    concurrency: int = 1,
    busy_timeout: float = BUSY_TIMEOUT,
    **settings: Any,
) -> AsyncIterator[Setup]:
    store = SQLiteStore(str(home / "aijobs.db"), busy_timeout=busy_timeout)
    await store.open()
    clock, children, inference = FakeClock(), TrainingChildren(), FakeInferenceChild()
    worker = Worker(
        Settings(home=home, **settings),
        store,
        queues,
        concurrency,
        clock=clock,
        spawn_training=children,
        inference_child=inference,
    )
    try:
        yield Setup(store, worker, clock, children, inference)
    finally:
        for held in list(worker.running.values()):
            if held.task is not None:
                held.task.cancel()
        await store.close()


async def submit_training(store: SQLiteStore, queue: str, **payload: Any) -> str:
    job = NewJob(
        job_type=JobType.TRAINING,
        queue=queue,
        payload={"model_type": "inception", "data_path": "/data/x", **payload},
        model_type="inception",
    )
    return (await store.submit(job)).id


async def stored_model(store: SQLiteStore, queue: str = "sklearn") -> str:
    """A model in the store, as a finished training job leaves it."""
    await submit_training(store, queue)
    (claim,) = await store.claim([queue], "trainer", 60)
    model = ModelRecord(
        model_id=f"model_{claim.job.id}",
        framework="fake",
        queue=queue,
        model_type="random_forest",
        path="/models/m",
        job_id=claim.job.id,
        created_at=now(),
    )
    assert await store.finish(claim.job.id, claim.token, {}, model=model)
    return model.model_id


async def submit_inference(
    store: SQLiteStore, model_id: str, n: int, queue: str = "sklearn"
) -> list[str]:
    ids = []
    for i in range(n):
        job = NewJob(
            job_type=JobType.INFERENCE,
            queue=queue,
            payload={"input_data": [i]},
            model_id=model_id,
        )
        ids.append((await store.submit(job)).id)
    return ids


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the worker's tasks run (their store writes take real time) until `condition`."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
