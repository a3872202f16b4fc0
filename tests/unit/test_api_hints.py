"""api/hints.py: the API's short-lived copies of the live workers and recent run times, over a
real SQLite store."""

from __future__ import annotations

import asyncio
import time

import pytest

from aijobs.api import hints as hints_module
from aijobs.api.hints import Hints
from aijobs.jobs import JobType, NewJob, WorkerInfo
from aijobs.store.sqlite import SQLiteStore


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


def worker(worker_id: str) -> WorkerInfo:
    now = time.time()
    return WorkerInfo(
        worker_id=worker_id, host="h", pid=1, queues=["q"], started_at=now, last_seen=now
    )


async def ids(hints: Hints) -> set[str]:
    return {w.worker_id for w in await hints.live_workers()}


async def test_live_workers_are_served_from_the_copy_until_it_is_stale(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    hints = Hints(store, worker_ttl_seconds=60)
    await store.register_worker(worker("w1"))
    assert await ids(hints) == {"w1"}
    await store.register_worker(worker("w2"))
    assert await ids(hints) == {"w1"}  # the copy, not the store
    assert {w.worker_id for w in await hints.fresh_live_workers()} == {"w1", "w2"}
    assert await ids(hints) == {"w1", "w2"}  # GET /workers' fresh read refreshed it
    monkeypatch.setattr(hints_module, "LIVE_WORKERS_MAX_AGE", 0.05)
    await store.register_worker(worker("w3"))
    await hints.fresh_live_workers()
    await store.unregister_worker("w3")
    await asyncio.sleep(0.1)
    assert await ids(hints) == {"w1", "w2"}  # stale: read again


async def test_recent_durations_are_kept_per_kind(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hints_module, "DURATIONS_MAX_AGE", 0.05)
    hints = Hints(store, worker_ttl_seconds=60)
    assert await hints.recent_durations(JobType.TRAINING, "m", "q") == []
    job = await store.submit(
        NewJob(job_type=JobType.TRAINING, queue="q", payload={}, model_type="m")
    )
    (claim,) = await store.claim(["q"], "w1", 60)
    await store.finish(job.id, claim.token, {})
    assert await hints.recent_durations(JobType.TRAINING, "m", "q") == []  # the copy
    assert await hints.recent_durations(JobType.TRAINING, "m", "other") == []
    await asyncio.sleep(0.1)
    assert len(await hints.recent_durations(JobType.TRAINING, "m", "q")) == 1


async def test_concurrent_readers_of_a_stale_copy_share_one_answer(store: SQLiteStore) -> None:
    hints = Hints(store, worker_ttl_seconds=60)
    await store.register_worker(worker("w1"))
    answers = await asyncio.gather(*(hints.live_workers() for _ in range(20)))
    assert all(a is answers[0] for a in answers)  # one store read, one list for all
