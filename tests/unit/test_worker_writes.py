"""A worker's last write through a lost reply: the store committed it, the answer never came.

The store is the real SQLite store; the fault is injected at its boundary (the reply is dropped
after the commit, as a Redis connection lost mid-reply would), so the worker must find out that
its own finish landed instead of reporting the job lost (and deleting the model it published).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aijobs import errors
from aijobs.jobs import Finish, JobType, NewJob, State
from aijobs.settings import Settings
from aijobs.store.sqlite import SQLiteStore
from aijobs.worker import commits
from aijobs.worker.loop import Worker
from aijobs.worker.running import Running


class RepliesLost(SQLiteStore):
    """Commits finishes, then loses the reply of the first `lose` of them."""

    lose = 1

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        answers = await super().finish_many(finishes)
        if self.lose > 0:
            self.lose -= 1
            raise errors.StoreUnavailable("connection lost while reading the reply")
        return answers


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(commits, "STORE_RETRY_SECONDS", 0.01)
    store = RepliesLost(str(tmp_path / "aijobs.db"))
    await store.open()
    worker = Worker(Settings(home=tmp_path), store, ["sklearn"])
    yield store, worker
    await store.close()


async def _held(store: SQLiteStore, worker: Worker, n: int = 1) -> list[Running]:
    for _ in range(n):
        await store.submit(NewJob(job_type=JobType.INFERENCE, queue="sklearn", payload={}))
    return [Running(c) for c in await store.claim(["sklearn"], worker.worker_id, 60, limit=n)]


async def test_a_finish_whose_reply_was_lost_is_known_to_have_landed(setup: Any) -> None:
    store, worker = setup
    (held,) = await _held(store, worker)
    assert await worker.commits.write(held, "finish", result={"ok": 1})
    job = await store.get(held.job.id)
    assert job.state is State.COMPLETED
    assert job.result == {"ok": 1}


async def test_a_batch_whose_reply_was_lost_is_not_finished_twice(setup: Any) -> None:
    store, worker = setup
    helds = await _held(store, worker, 3)
    await worker.commits.finish_many([(h, {"n": i}) for i, h in enumerate(helds)])
    for i, held in enumerate(helds):
        job = await store.get(held.job.id)
        assert job.state is State.COMPLETED
        assert job.result == {"n": i}


async def test_a_finish_of_a_job_someone_else_owns_is_not_claimed_as_landed(setup: Any) -> None:
    store, worker = setup
    (held,) = await _held(store, worker)
    await store.cancel(held.job.id)  # the finish is refused: nothing of ours landed
    assert not await worker.commits.write(held, "finish", result={"ok": 1})
    assert (await store.get(held.job.id)).state is State.CANCELLED
