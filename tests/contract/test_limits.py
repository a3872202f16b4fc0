"""The JobStore contract for limits: rate windows (take_tokens), pending-job limits in submit and
retention, under concurrent bursts from two clients of one store (two API processes' view)."""

from __future__ import annotations

import asyncio

import pytest

from aijobs import errors
from aijobs.jobs import PendingLimits, State
from aijobs.store.base import JobStore
from tests.contract.support import Factory, claim_one, new, opened

BURST = 40  # concurrent callers, split over the two clients


async def two_clients(store_factory: Factory) -> tuple[JobStore, JobStore]:
    return await opened(store_factory), await opened(store_factory)


async def test_take_tokens_never_allows_more_than_the_limit(store_factory: Factory) -> None:
    a, b = await two_clients(store_factory)
    try:
        calls = [(a, b)[i % 2].take_tokens("ip:10.0.0.1", 10, 3600) for i in range(BURST)]
        decisions = await asyncio.gather(*calls)
        allowed = [d for d in decisions if d.allowed]
        assert len(allowed) == 10
        assert sorted(d.remaining for d in allowed) == list(range(10))
        assert all(d.remaining == 0 and d.limit == 10 for d in decisions if not d.allowed)
        assert all(0 < d.reset_seconds <= 3600 for d in decisions)
        other = await b.take_tokens("ip:10.0.0.2", 10, 3600)  # each key has its own window
        assert (other.allowed, other.remaining) == (True, 9)
    finally:
        await a.close()
        await b.close()


async def test_take_tokens_allows_again_in_the_next_window(store: JobStore) -> None:
    first = await store.take_tokens("user:alice", 1, 0.3)
    assert first.allowed
    refused = await store.take_tokens("user:alice", 1, 0.3)
    assert not refused.allowed
    await asyncio.sleep(refused.reset_seconds + 0.05)
    assert (await store.take_tokens("user:alice", 1, 0.3)).allowed


async def test_pending_limit_holds_under_a_burst(store_factory: Factory) -> None:
    a, b = await two_clients(store_factory)
    limits = PendingLimits(per_queue=5)
    try:
        calls = [(a, b)[i % 2].submit(new("q"), limits=limits) for i in range(BURST // 2)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(accepted) == 5
        assert all(isinstance(r, errors.QueueFull) for r in refused), refused
        assert "AIJOBS_MAX_PENDING_PER_QUEUE=5" in str(refused[0])
        assert (await a.queue_depths())["q"]["pending"] == 5
        # Another queue has its own count; without limits nothing is refused.
        await b.submit(new("other"), limits=limits)
        await b.submit(new("q"))
    finally:
        await a.close()
        await b.close()


async def test_pending_limit_counts_pending_jobs_only(store: JobStore) -> None:
    limits = PendingLimits(per_queue=1)
    first = await store.submit(new(), idempotency_key="k", limits=limits)
    with pytest.raises(errors.QueueFull):
        await store.submit(new(), limits=limits)
    # A retry of the first submission is answered with its job, full queue or not.
    assert (await store.submit(new(), idempotency_key="k", limits=limits)).id == first.id
    await claim_one(store)  # running now: room for one more pending job
    second = await store.submit(new(), limits=limits)
    assert second.state is State.PENDING


async def test_principal_limit_holds_under_a_burst_across_queues(store_factory: Factory) -> None:
    a, b = await two_clients(store_factory)
    limits = PendingLimits(per_principal=4)
    try:
        calls = [
            (a, b)[i % 2].submit(new(f"q{i % 3}", principal="key:alice"), limits=limits)
            for i in range(BURST // 2)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(results) - len(refused) == 4
        assert all(isinstance(r, errors.QueueFull) for r in refused), refused
        assert "principal 'key:alice'" in str(refused[0])
        assert "AIJOBS_MAX_PENDING_PER_PRINCIPAL=4" in str(refused[0])
        # Another principal has its own count; jobs without a principal are not counted.
        await b.submit(new("other", principal="key:bob"), limits=limits)
        await b.submit(new("other"), limits=limits)
        # A job that starts leaves room for one more.
        pending, _ = await a.list_jobs(State.PENDING, principal="key:alice")
        await claim_one(a, pending[-1].queue)
        await a.submit(new("q1", principal="key:alice"), limits=limits)
    finally:
        await a.close()
        await b.close()


async def test_retention_deletes_the_oldest_finished_jobs(store_factory: Factory) -> None:
    store = await opened(store_factory, retain_jobs=2)
    try:
        ids = [(await store.submit(new())).id for _ in range(4)]
        for job_id in ids:
            claim = await claim_one(store)
            assert claim.job.id == job_id
            assert await store.finish(job_id, claim.token, {})
            # Apart by more than the stores' millisecond: jobs that end within one are equally
            # old to the retention index (the Redis store then trims them in id order).
            await asyncio.sleep(0.002)
        active = await store.submit(new())
        await store.rescue_expired()  # where the SQLite store trims (Redis trims as jobs end)
        listed, total = await store.list_jobs()
        assert [j.id for j in listed] == [active.id, ids[3], ids[2]]
        assert total == 3
        with pytest.raises(errors.JobNotFound):
            await store.get(ids[0])
    finally:
        await store.close()
