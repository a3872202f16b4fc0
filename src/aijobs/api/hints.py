"""What the API's answers hint at without being exact: the live workers and the recent run
times, read from the store at most every few seconds per process; and the records of the models
that inference submissions name, which never change.

A POST /jobs/* answer says whether a live worker serves the job's queue and estimates its run
time; both are hints, and reading them fresh doubled the store round trips of a submission. So
each API process keeps them here for a short while: live workers for LIVE_WORKERS_MAX_AGE
seconds, recent durations per (job type, model type, queue) for DURATIONS_MAX_AGE. Readers whose
answer must be exact (GET /metrics) read the store instead; GET /workers reads fresh and refreshes
this copy. Concurrent readers of a stale entry share one store read.

An inference POST reads its model's record (the queue that serves it, its owner) before it
submits: a second store round trip per submission, on the path of every warm inference. A
record never changes once stored, so each API process keeps the ones it read for
MODEL_MAX_AGE seconds; whether the model still exists (a delete, by any process) the submit
checks in its own atomic step (JobStore.submit's require_model). A model not found is not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aijobs.jobs import JobType, ModelRecord, WorkerInfo
from aijobs.store import JobStore

LIVE_WORKERS_MAX_AGE = 1.0  # seconds a copy of the live workers serves
DURATIONS_MAX_AGE = 5.0  # seconds a copy of one kind's recent run times serves
MAX_KINDS = 1024  # duration entries kept at most (a kind is a job type, model type and queue)
MODEL_MAX_AGE = 60.0  # seconds a copy of a model's record serves
MAX_MODELS = 1024  # model records kept at most

T = TypeVar("T")


class _Entry(Generic[T]):
    """One cached value, the monotonic time it expires, and the read refreshing it if any."""

    __slots__ = ("expires", "refresh", "value")

    def __init__(self) -> None:
        self.value: T | None = None
        self.expires = 0.0
        self.refresh: asyncio.Future[T] | None = None

    async def get(self, max_age: float, read: Callable[[], Awaitable[T]]) -> T:
        if self.value is not None and time.monotonic() < self.expires:
            return self.value
        if self.refresh is None:  # the first reader of a stale entry reads; the others wait
            self.refresh = asyncio.ensure_future(read())
            refresh = self.refresh
            try:
                self.value = await asyncio.shield(refresh)
                self.expires = time.monotonic() + max_age
            finally:
                self.refresh = None
            return self.value
        return await asyncio.shield(self.refresh)

    def put(self, value: T, max_age: float) -> None:
        self.value, self.expires = value, time.monotonic() + max_age


K = TypeVar("K")


def _entry_of(entries: dict[K, _Entry[T]], key: K, most: int) -> _Entry[T]:
    """The entry of `key`, a new one if it has none; all are dropped when `most` are kept."""
    entry = entries.get(key)
    if entry is None:
        if len(entries) >= most:
            entries.clear()
        entry = entries[key] = _Entry()
    return entry


class Hints:
    """One API process's short-lived copies of the live workers and of recent run times."""

    def __init__(self, store: JobStore, worker_ttl_seconds: float) -> None:
        self.store = store
        self.worker_ttl = worker_ttl_seconds
        self._workers: _Entry[list[WorkerInfo]] = _Entry()
        self._durations: dict[tuple[JobType, str | None, str], _Entry[list[float]]] = {}
        self._models: dict[str, _Entry[ModelRecord]] = {}

    async def live_workers(self) -> list[WorkerInfo]:
        """The live workers, as the store said at most LIVE_WORKERS_MAX_AGE seconds ago."""
        return await self._workers.get(
            LIVE_WORKERS_MAX_AGE, lambda: self.store.live_workers(self.worker_ttl)
        )

    async def fresh_live_workers(self) -> list[WorkerInfo]:
        """The live workers read now; the copy the other readers share is refreshed with them."""
        workers = await self.store.live_workers(self.worker_ttl)
        self._workers.put(workers, LIVE_WORKERS_MAX_AGE)
        return workers

    async def recent_durations(
        self, job_type: JobType, model_type: str | None, queue: str
    ) -> list[float]:
        """JobStore.recent_durations, as it was at most DURATIONS_MAX_AGE seconds ago."""
        # Model types are the callers' words: the entries are bounded.
        entry = _entry_of(self._durations, (job_type, model_type, queue), MAX_KINDS)
        return await entry.get(
            DURATIONS_MAX_AGE, lambda: self.store.recent_durations(job_type, model_type, queue)
        )

    async def model(self, model_id: str) -> ModelRecord:
        """JobStore.get_model, as it was at most MODEL_MAX_AGE seconds ago; ModelNotFound (never
        kept) as the store raises it."""
        entry = _entry_of(self._models, model_id, MAX_MODELS)
        return await entry.get(MODEL_MAX_AGE, lambda: self.store.get_model(model_id))
