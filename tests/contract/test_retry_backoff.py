"""A job sent back to pending by a counted failure (a crash, a lost lease) waits out the store's
RetryBackoff before a claim can take it, while the jobs behind it are taken; a job handed back
for the worker's sake (count_attempt=False) is claimable at once. The wait is base * 2^(attempt
- 1), capped, jittered down to half; it is read here from each store's own record of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aijobs.jobs import State
from aijobs.store.base import JobStore, RetryBackoff
from tests.contract.support import EXPIRE, LONG, SHORT, Factory, claim_one, new, opened
from tests.contract.test_not_started import audit

SLACK_MS = 2000  # a slow machine's time between reading the clock and the store's write


async def store_now_ms(store: JobStore) -> int:
    """The store's clock for back-offs: SQLite's lease clock, Redis's server TIME."""
    from aijobs.store.redis import RedisStore
    from aijobs.store.sqlite import SQLiteStore

    if isinstance(store, RedisStore):
        seconds, micros = await store.client().time()
        return int(seconds) * 1000 + int(micros) // 1000
    assert isinstance(store, SQLiteStore)
    return store.clock.lease_ms()


async def not_before_ms(store: JobStore, job_id: str) -> int | None:
    """When the store lets the job be claimed again (None: at once), as it records it."""
    from aijobs.store.redis import RedisStore
    from aijobs.store.sqlite import SQLiteStore

    if isinstance(store, RedisStore):
        value = await store.client().hget(store.k("job", job_id), "not_before")
        return None if value is None else int(value)
    assert isinstance(store, SQLiteStore)
    rows = await store._db.read("SELECT not_before FROM jobs WHERE id = ?", (job_id,))
    return rows[0][0]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def backed_off(store_factory: Factory, base: float, cap: float) -> AsyncIterator[JobStore]:
    store = await opened(store_factory, retry_backoff=RetryBackoff(base, cap))
    try:
        yield store
    finally:
        await store.close()


async def test_a_retried_job_waits_and_the_jobs_behind_it_are_taken(
    store_factory: Factory,
) -> None:
    async with backed_off(store_factory, 60, 600) as store:
        first = await store.submit(new())
        behind = await store.submit(new())
        claim = await claim_one(store)
        assert claim.job.id == first.id
        before = await store_now_ms(store)
        assert await store.fail(first.id, claim.token, "crashed", retry=True)
        assert (await store.get(first.id)).state is State.PENDING
        await audit(store)
        assert [c.job.id for c in await store.claim(["q"], "w2", LONG, limit=5)] == [behind.id]
        at = await not_before_ms(store, first.id)
        assert at is not None
        assert 30_000 <= at - before <= 60_000 + SLACK_MS  # attempt 1: base, jittered to half
        await audit(store)


async def test_the_wait_doubles_with_each_attempt_up_to_its_cap(store_factory: Factory) -> None:
    async with backed_off(store_factory, 0.1, 0.15) as store:
        job = await store.submit(new(max_attempts=5))
        waits = []
        for attempt in (1, 2, 3):
            claim = await claim_one(store)
            assert claim.job.attempt == attempt
            before = await store_now_ms(store)
            assert await store.fail(job.id, claim.token, "crashed", retry=True)
            at = await not_before_ms(store, job.id)
            assert at is not None
            waits.append(at - before)
            assert await store.claim(["q"], "w1", LONG) == []
            await asyncio.sleep(0.2)  # past the cap
        assert 50 <= waits[0] <= 100 + SLACK_MS  # 100 ms, jittered
        assert 75 <= waits[1] <= 150 + SLACK_MS  # 200 ms, capped at 150, jittered
        assert 75 <= waits[2] <= 150 + SLACK_MS  # 400 ms, capped
        claim = await claim_one(store)  # due: claimable again, nothing else needed
        assert (claim.job.id, claim.job.attempt) == (job.id, 4)
        assert await not_before_ms(store, job.id) is None
        await audit(store)


async def test_a_job_handed_back_uncounted_is_claimable_at_once(store_factory: Factory) -> None:
    async with backed_off(store_factory, 60, 600) as store:
        job = await store.submit(new())
        claim = await claim_one(store)
        assert await store.fail(job.id, claim.token, "shutdown", retry=True, count_attempt=False)
        assert await not_before_ms(store, job.id) is None
        again = await claim_one(store)
        assert (again.job.id, again.job.attempt) == (job.id, 1)
        await audit(store)


async def test_a_rescued_job_waits_too(store_factory: Factory) -> None:
    async with backed_off(store_factory, 60, 600) as store:
        job = await store.submit(new())
        await store.claim(["q"], "w1", SHORT)
        await asyncio.sleep(EXPIRE)
        assert await store.rescue_expired() == [(job.id, State.PENDING)]
        assert await store.claim(["q"], "w2", LONG) == []
        assert await not_before_ms(store, job.id) is not None
        await audit(store)
        # a waiting job can be cancelled like any pending one
        assert (await store.cancel(job.id)).state is State.CANCELLED
        await audit(store)


async def test_no_backoff_by_default(store: JobStore) -> None:
    job = await store.submit(new())
    claim = await claim_one(store)
    assert await store.fail(job.id, claim.token, "crashed", retry=True)
    assert (await claim_one(store)).job.attempt == 2
