"""A job's last write through a store outage, on a clock that jumps: retried while the lease
could still be ours, abandoned once it cannot be. The outage is real: the SQLite store is
closed, or its file locked by another connection past the busy timeout, until the test says the
store is back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aijobs.jobs import Job, JobType, NewJob, State
from aijobs.worker.commits import STORE_RETRY_SECONDS
from aijobs.worker.protocol import ProgressReport
from aijobs.worker.running import Running, StopReason
from tests.unit.worker_fakes import (
    Setup,
    setup,
    stored_model,
    submit_inference,
    submit_training,
    until,
)


async def held_jobs(s: Setup, n: int = 1) -> list[Running]:
    for _ in range(n):
        await s.store.submit(NewJob(job_type=JobType.INFERENCE, queue="sklearn", payload={}))
    claims = await s.store.claim(["sklearn"], s.worker.worker_id, 60, limit=n)
    return [Running(c) for c in claims]


def still_held(s: Setup, job: Job) -> bool:
    """Leased to the worker, nothing written: an inference job it has not started shows pending."""
    return (job.state, job.owner, job.finished_at) == (State.PENDING, s.worker.worker_id, None)


def back_after(s: Setup, sleeps: int) -> None:
    """The store is down now and back after the worker's `sleeps`-th back-off."""

    async def on_sleep() -> None:
        if len(s.clock.slept) == sleeps:
            await s.store.open()

    s.clock.on_sleep = on_sleep


async def test_a_fail_is_retried_until_the_store_is_back(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], lease_seconds=60) as s:
        (held,) = await held_jobs(s)
        await s.store.close()
        back_after(s, 3)
        assert await s.worker.commits.write(held, "fail", "bad input")
        assert s.clock.slept == [STORE_RETRY_SECONDS] * 3
        job = await s.store.get(held.job.id)
        assert job.state is State.FAILED
        assert job.error == "bad input"


async def test_a_finish_is_abandoned_once_the_lease_cannot_be_ours(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], lease_seconds=10) as s:
        (held,) = await held_jobs(s)
        await s.store.close()
        assert not await s.worker.commits.write(held, "finish", result={"ok": 1})
        # Retried for the lease's length, then left to the store's rescue.
        assert sum(s.clock.slept) >= 10
        assert sum(s.clock.slept) <= 10 + STORE_RETRY_SECONDS
        await s.store.open()
        assert still_held(s, await s.store.get(held.job.id))


async def test_a_batch_finish_is_retried_through_an_outage(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], lease_seconds=60) as s:
        helds = await held_jobs(s, 3)
        await s.store.close()
        back_after(s, 2)
        await s.worker.commits.finish_many([(h, {"n": i}) for i, h in enumerate(helds)])
        assert len(s.clock.slept) == 2
        for i, held in enumerate(helds):
            job = await s.store.get(held.job.id)
            assert job.state is State.COMPLETED
            assert job.result == {"n": i}


async def test_a_stopped_job_is_never_written(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"]) as s:
        cancelled, lost, draining = await held_jobs(s, 3)
        cancelled.stop_reason = StopReason.CANCEL
        lost.stop_reason = StopReason.LOST
        draining.stop_reason = StopReason.DRAINING
        assert not await s.worker.commits.write(cancelled, "finish", result={})
        assert not await s.worker.commits.write(lost, "fail", "late")
        await s.worker.commits.finish_many([(draining, {})])
        for held in (cancelled, lost, draining):
            assert still_held(s, await s.store.get(held.job.id))


async def test_the_store_being_down_sends_the_claim_step_into_back_off(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"]) as s:
        await s.store.close()
        assert not await s.worker.tick()
        assert s.clock.slept == [STORE_RETRY_SECONDS]
        assert not s.worker.running
        await s.store.open()


@contextmanager
def locked(db_path: Path) -> Iterator[Callable[[], None]]:
    """Another process's write transaction on the store's file, held past the busy timeout
    until the returned release() is called."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        if holder.in_transaction:
            holder.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        holder.close()


async def test_a_finished_training_lands_through_a_lock_at_the_moment_of_its_commit(
    tmp_path: Path,
) -> None:
    async with setup(tmp_path, ["sklearn"], busy_timeout=0.1, lease_seconds=60) as s:
        job_id = await submit_training(s.store, "sklearn")
        await s.worker.tick()
        await until(lambda: bool(s.children))
        s.children[0].on_progress(ProgressReport(0.9, {"loss": 0.1}))  # the last epoch's report
        with locked(tmp_path / "aijobs.db") as release:

            async def back() -> None:
                release()

            s.clock.on_sleep = back
            s.children[0].end()
            await until(lambda: not s.worker.running)
        assert s.clock.slept  # the commit met the lock and waited it out
        job = await s.store.get(job_id)
        assert job.state is State.COMPLETED, job.error
        assert job.attempt == 1
        assert job.result is not None
        model = await s.store.get_model(job.result["model_id"])
        assert Path(model.path).is_dir()


async def test_an_inference_model_lookup_waits_out_an_outage(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], lease_seconds=60) as s:
        model_id = await stored_model(s.store)
        (job_id,) = await submit_inference(s.store, model_id, 1)
        closed = asyncio.Event()

        async def back() -> None:  # at the first back-off, once the store is all closed
            if len(s.clock.slept) == 1:
                await closed.wait()
                await s.store.open()

        s.clock.on_sleep = back
        await s.worker.tick()  # the batch starts at the next await: the store is down by then
        await s.store.close()
        closed.set()
        await until(lambda: not s.worker.running)
        assert s.clock.slept == [STORE_RETRY_SECONDS]
        job = await s.store.get(job_id)
        assert job.state is State.COMPLETED, job.error
