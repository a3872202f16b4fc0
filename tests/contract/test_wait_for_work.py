"""The JobStore contract (store/base.py) for wait_for_work, on every backend in conftest.BACKENDS.

What a worker may rely on from any store: the wait ends within its timeout when nothing comes,
and soon after a job is submitted; a job submitted meanwhile is then either among the claims it
returns (a store that hands work over) or left for the worker's own claim (a store that only
hints), never both and never neither; a claim it returns is an ordinary leased claim of that
worker, within the room it declared; a waiter that stops, or times out, holds nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from aijobs.jobs import Claim, JobType, NewJob, Renewal, State, Waiter
from aijobs.store.base import JobStore
from tests.contract.support import EXPIRE, LONG, SHORT, Factory, new, opened

PROMPT = 2.0  # "soon": far below the waits' own timeouts, far above any store's wake-up


def infer(queue: str = "q") -> NewJob:
    payload = {"model_id": "m", "input_data": "x"}
    return NewJob(job_type=JobType.INFERENCE, queue=queue, payload=payload, model_id="m")


@pytest.fixture
async def submitter(store_factory: Factory) -> AsyncIterator[JobStore]:
    """A second client of the same store (an API process, beside the worker's)."""
    s = await opened(store_factory)
    try:
        yield s
    finally:
        await s.close()


async def taken(
    store: JobStore, waiter: Waiter, returned: list[Claim], queues: list[str]
) -> list[Claim]:
    """What the waiting worker ends up holding: what the wait handed it, else what it claims."""
    if returned:
        return returned
    return await store.claim(
        queues, waiter.worker_id, waiter.lease_seconds, max_training=waiter.max_training
    )


async def test_returns_within_its_timeout_when_no_work_comes(store: JobStore) -> None:
    for waiter in (None, Waiter("w1", LONG, max_training=1)):
        t0 = time.monotonic()
        assert await store.wait_for_work(["q"], 0.3, waiter) == []
        assert time.monotonic() - t0 < 0.3 + PROMPT


async def test_wakes_soon_after_a_submission_and_the_job_is_taken_once(
    store: JobStore, submitter: JobStore
) -> None:
    waiter = Waiter("w1", LONG, max_training=1)
    task = asyncio.create_task(store.wait_for_work(["other", "q"], 30, waiter))
    await asyncio.sleep(0.2)
    assert not task.done()
    t0 = time.monotonic()
    job = await submitter.submit(new())
    returned = await asyncio.wait_for(task, PROMPT * 2)
    assert time.monotonic() - t0 < PROMPT  # woken by the submission, not by the timeout
    held = await taken(store, waiter, returned, ["other", "q"])
    assert [c.job.id for c in held] == [job.id]
    assert await store.claim(["other", "q"], "w2", LONG) == []  # nobody else gets it


async def test_a_job_submitted_between_an_empty_claim_and_the_wait_wakes_it_at_once(
    store: JobStore, submitter: JobStore
) -> None:
    """A worker's loop: claim, find nothing, wait. A job that lands between the claim and the
    wait must not be slept through until the wait's timeout."""
    waiter = Waiter("w1", LONG, max_training=1)
    for _ in range(3):  # each time from a different state of the store's wake-up machinery
        assert await store.claim(["q"], "w1", LONG) == []
        job = await submitter.submit(new())
        await asyncio.sleep(0.2)  # long after the commit: whatever would notice it has
        t0 = time.monotonic()
        returned = await store.wait_for_work(["q"], 30, waiter)
        assert time.monotonic() - t0 < PROMPT
        held = await taken(store, waiter, returned, ["q"])
        assert [c.job.id for c in held] == [job.id]
        assert await store.finish(job.id, held[0].token, {})


async def test_a_waiter_without_a_waiter_record_is_woken_and_is_handed_nothing(
    store: JobStore, submitter: JobStore
) -> None:
    task = asyncio.create_task(store.wait_for_work(["q"], 30))
    await asyncio.sleep(0.2)
    job = await submitter.submit(infer())
    assert await asyncio.wait_for(task, PROMPT) == []
    assert (await store.get(job.id)).state is State.PENDING
    (claim,) = await store.claim(["q"], "w1", LONG)
    assert claim.job.id == job.id


async def test_a_returned_claim_is_an_ordinary_leased_claim_of_the_waiter(
    store: JobStore, submitter: JobStore
) -> None:
    waiter = Waiter("w1", LONG, max_training=1)
    task = asyncio.create_task(store.wait_for_work(["q"], 30, waiter))
    await asyncio.sleep(0.2)
    job = await submitter.submit(infer())
    (claim,) = await taken(store, waiter, await asyncio.wait_for(task, PROMPT), ["q"])
    # an inference job, leased: pending to its owner until the worker says it started it
    assert (claim.job.id, claim.job.state, claim.job.owner) == (job.id, State.PENDING, "w1")
    assert claim.job.attempt == 1
    stored = await store.get(job.id)
    assert (stored.state, stored.owner, stored.attempt) == (State.PENDING, "w1", 1)
    renewed = await store.renew("w1", {job.id: (claim.token, None)}, LONG)
    assert renewed == {job.id: Renewal.OK}
    assert not await store.finish(job.id, claim.token + "x", {"stale": True})
    assert await store.finish(job.id, claim.token, {"ok": True})
    assert (await submitter.get(job.id)).result == {"ok": True}


async def test_a_returned_claim_holds_the_waiters_lease_and_is_rescued_when_it_ends(
    store: JobStore, submitter: JobStore
) -> None:
    waiter = Waiter("w1", SHORT, max_training=1)
    task = asyncio.create_task(store.wait_for_work(["q"], 30, waiter))
    await asyncio.sleep(0.2)
    job = await submitter.submit(infer())
    (claim,) = await taken(store, waiter, await asyncio.wait_for(task, PROMPT), ["q"])
    assert claim.job.id == job.id
    await asyncio.sleep(EXPIRE)
    assert await store.rescue_expired() == [(job.id, State.PENDING)]
    assert (await store.renew("w1", {job.id: (claim.token, None)}, LONG)) == {job.id: Renewal.LOST}


async def test_no_training_job_is_handed_to_a_waiter_without_room_for_one(
    store: JobStore, submitter: JobStore
) -> None:
    full = Waiter("w1", LONG, max_training=0)
    task = asyncio.create_task(store.wait_for_work(["q"], 0.5, full))
    await asyncio.sleep(0.2)
    training = await submitter.submit(new())
    returned = await asyncio.wait_for(task, PROMPT)
    assert [c for c in returned if c.job.job_type is JobType.TRAINING] == []
    assert await taken(store, full, returned, ["q"]) == []
    assert (await store.get(training.id)).state is State.PENDING
    (claim,) = await store.claim(["q"], "w2", LONG)  # a worker with room takes it
    assert claim.job.id == training.id


async def test_a_waiter_without_room_for_training_gets_the_inference_behind_a_training_job(
    store: JobStore, submitter: JobStore
) -> None:
    full = Waiter("w1", LONG, max_training=0)
    training = await submitter.submit(new())
    task = asyncio.create_task(store.wait_for_work(["q"], 30, full))
    await asyncio.sleep(0.2)
    first = await submitter.submit(infer())
    (claim,) = await taken(store, full, await asyncio.wait_for(task, PROMPT), ["q"])
    assert claim.job.id == first.id
    assert (await store.get(training.id)).state is State.PENDING


async def test_each_job_submitted_to_several_waiters_is_taken_exactly_once(
    store_factory: Factory, submitter: JobStore
) -> None:
    workers = [await opened(store_factory) for _ in range(3)]
    try:
        waiters = [Waiter(f"w{i}", LONG, max_training=1) for i in range(3)]
        tasks = [
            asyncio.create_task(s.wait_for_work(["q"], 30, w))
            for s, w in zip(workers, waiters, strict=True)
        ]
        await asyncio.sleep(0.2)
        ids = {(await submitter.submit(infer())).id for _ in range(3)}
        held: list[Claim] = []
        for s, w, task in zip(workers, waiters, tasks, strict=True):
            returned = await asyncio.wait_for(task, PROMPT * 2)
            held += await taken(s, w, returned, ["q"])
        flat = [c.job.id for c in held]
        assert len(flat) == len(set(flat)) == 3
        assert set(flat) == ids
        for c in held:
            assert (await submitter.get(c.job.id)).owner == c.job.owner
    finally:
        for s in workers:
            await s.close()


async def test_a_stopped_waiter_holds_nothing(store: JobStore, submitter: JobStore) -> None:
    waiter = Waiter("w1", LONG, max_training=1)
    task = asyncio.create_task(store.wait_for_work(["q"], 30, waiter))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, PROMPT)
    job = await submitter.submit(infer())
    assert (await store.get(job.id)).state is State.PENDING
    (claim,) = await store.claim(["q"], "w2", LONG)
    assert claim.job.id == job.id


async def test_a_waiter_that_timed_out_holds_nothing(store: JobStore, submitter: JobStore) -> None:
    assert await store.wait_for_work(["q"], 0.2, Waiter("w1", LONG, max_training=1)) == []
    job = await submitter.submit(infer())
    assert (await store.get(job.id)).state is State.PENDING
    (claim,) = await store.claim(["q"], "w2", LONG)
    assert claim.job.id == job.id
