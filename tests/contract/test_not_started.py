"""A claimed job that its worker has not started yet (an inference job queued in the worker behind
another) shows pending, with no start time, while the store holds it leased to that worker; the
renewal that says it started makes it running. Counts, listings and queue depths go by the state
a job shows, on every path out of it; on Redis the index audit stays exact throughout."""

from __future__ import annotations

import asyncio
from typing import Any

from aijobs.jobs import Claim, JobType, Progress, Renewal, State
from aijobs.store.base import JobStore
from tests.contract.support import EXPIRE, LONG, SHORT, new

STARTED = Progress(started=True)


def infer(queue: str = "q") -> Any:
    return new(queue, job_type=JobType.INFERENCE, model_id="m")


async def audit(store: JobStore) -> None:
    """The Redis store's index audit (SQLite keeps its counts by trigger: checked by listing)."""
    from aijobs.store.redis import RedisStore

    if isinstance(store, RedisStore):
        from aijobs.store.redis.check import check_invariants

        assert await check_invariants(store) == []


async def listed(store: JobStore, state: State) -> tuple[list[str], int]:
    jobs, total = await store.list_jobs(state=state)
    return [j.id for j in jobs], total


async def claim_queued(store: JobStore, n: int = 2) -> list[Claim]:
    for _ in range(n):
        await store.submit(infer())
    claims = await store.claim(["q"], "w1", LONG, limit=n)
    assert len(claims) == n
    return claims


async def test_a_claimed_inference_job_shows_pending_until_its_start_is_renewed(
    store: JobStore,
) -> None:
    first, second = await claim_queued(store)
    for claim in (first, second):
        assert claim.job.state is State.PENDING
        job = await store.get(claim.job.id)
        assert (job.state, job.started_at, job.owner, job.attempt) == (
            State.PENDING,
            None,
            "w1",
            1,
        )
    assert await store.claim(["q"], "w2", LONG, limit=5) == []  # leased: nobody else takes it
    assert await listed(store, State.PENDING) == ([second.job.id, first.job.id], 2)
    assert await listed(store, State.RUNNING) == ([], 0)
    assert await store.queue_depths() == {"q": {"pending": 2, "running": 0}}
    await audit(store)

    renewed = await store.renew(
        "w1", {first.job.id: (first.token, STARTED), second.job.id: (second.token, None)}, LONG
    )
    assert renewed == {first.job.id: Renewal.OK, second.job.id: Renewal.OK}
    running = await store.get(first.job.id)
    assert running.state is State.RUNNING
    assert running.started_at is not None
    assert (await store.get(second.job.id)).state is State.PENDING
    assert await listed(store, State.PENDING) == ([second.job.id], 1)
    assert await listed(store, State.RUNNING) == ([first.job.id], 1)
    assert await store.queue_depths() == {"q": {"pending": 1, "running": 1}}
    await audit(store)

    again = await store.renew("w1", {first.job.id: (first.token, STARTED)}, LONG)
    assert again == {first.job.id: Renewal.OK}
    assert (await store.get(first.job.id)).started_at == running.started_at  # the first start
    await audit(store)


async def test_a_stale_token_does_not_start_a_job(store: JobStore) -> None:
    (claim,) = await claim_queued(store, 1)
    answer = await store.renew("w1", {claim.job.id: (claim.token + "x", STARTED)}, LONG)
    assert answer == {claim.job.id: Renewal.LOST}
    assert (await store.get(claim.job.id)).state is State.PENDING
    await audit(store)


async def test_a_training_claim_starts_at_once(store: JobStore) -> None:
    job = await store.submit(new())
    (claim,) = await store.claim(["q"], "w1", LONG)
    assert claim.job.state is State.RUNNING
    stored = await store.get(job.id)
    assert stored.state is State.RUNNING
    assert stored.started_at is not None
    await audit(store)


async def test_every_way_out_of_a_job_not_started_keeps_the_counts(store: JobStore) -> None:
    done, cancelled, retried, failed, rescued = await claim_queued(store, 5)
    assert await store.finish(done.job.id, done.token, {"ok": True})
    finished = await store.get(done.job.id)
    assert finished.state is State.COMPLETED
    assert finished.started_at is not None  # it ran between two renewals
    assert (await store.cancel(cancelled.job.id)).state is State.CANCELLED
    assert await store.renew("w1", {cancelled.job.id: (cancelled.token, STARTED)}, LONG) == {
        cancelled.job.id: Renewal.CANCEL
    }
    assert await store.fail(retried.job.id, retried.token, "crashed", retry=True)
    assert await store.fail(failed.job.id, failed.token, "bad input")
    assert await store.renew("w1", {rescued.job.id: (rescued.token, None)}, SHORT) == {
        rescued.job.id: Renewal.OK
    }
    await asyncio.sleep(EXPIRE)
    assert (rescued.job.id, State.PENDING) in await store.rescue_expired()
    shown = {c.job.id: (await store.get(c.job.id)).state for c in (retried, failed, rescued)}
    assert shown == {
        retried.job.id: State.PENDING,
        failed.job.id: State.FAILED,
        rescued.job.id: State.PENDING,
    }
    for state, ids in {
        State.PENDING: {retried.job.id, rescued.job.id},
        State.RUNNING: set(),
        State.COMPLETED: {done.job.id},
        State.CANCELLED: {cancelled.job.id},
        State.FAILED: {failed.job.id},
    }.items():
        jobs, total = await listed(store, state)
        assert (set(jobs), total) == (ids, len(ids)), state
    assert await store.queue_depths() == {"q": {"pending": 2, "running": 0}}
    await audit(store)
