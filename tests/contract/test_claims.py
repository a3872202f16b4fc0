"""The JobStore contract (store/base.py) for claims: order, leases, fencing, rescue, failure.

Run against every backend in conftest.BACKENDS, written against the protocol only: what one
backend adds is tested in tests/integration/store. Leases are real and short (tens of ms):
backends take time from their own clock (the monotonic clock for SQLite, TIME for Redis).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aijobs import errors
from aijobs.jobs import (
    JobType,
    Progress,
    Renewal,
    State,
)
from aijobs.store.base import JobStore
from tests.contract.support import (
    EXPIRE,
    LONG,
    SHORT,
    Factory,
    claim_one,
    model,
    new,
    opened,
)


# -- claim -----------------------------------------------------------------------------------------
async def test_claim_priority_then_fifo_across_listed_queues(store: JobStore) -> None:
    j1 = await store.submit(new("a", 0))
    j2 = await store.submit(new("a", 5))
    j3 = await store.submit(new("a", 0))
    j4 = await store.submit(new("a", 5))
    j5 = await store.submit(new("b", 10))
    j6 = await store.submit(new("c", 100))
    j7 = await store.submit(new("b", -1))
    claims = await store.claim(["a", "b"], "w1", LONG, limit=10)
    assert [c.job.id for c in claims] == [j5.id, j2.id, j4.id, j1.id, j3.id, j7.id]
    assert (await store.get(j6.id)).state is State.PENDING
    assert await store.claim(["a", "b"], "w1", LONG, limit=10) == []
    assert [c.job.id for c in await store.claim(["c"], "w1", LONG)] == [j6.id]


async def test_claim_limit_takes_the_best_jobs_across_queues(store: JobStore) -> None:
    a_old = await store.submit(new("a", 0))
    a_hi = await store.submit(new("a", 2))
    b_low = await store.submit(new("b", 1))
    b_hi = await store.submit(new("b", 2))
    b_top = await store.submit(new("b", 7))
    assert [c.job.id for c in await store.claim(["a", "b"], "w", LONG)] == [b_top.id]
    assert [c.job.id for c in await store.claim(["b", "a"], "w", LONG, limit=2)] == [
        a_hi.id,
        b_hi.id,
    ]
    assert [c.job.id for c in await store.claim(["a", "b"], "w", LONG, limit=1)] == [b_low.id]
    assert [c.job.id for c in await store.claim(["a", "a"], "w", LONG, limit=5)] == [a_old.id]


async def test_claim_respects_limit_and_sets_lease_fields(store: JobStore) -> None:
    for i in range(5):
        await store.submit(new(payload={"i": i}))
    before = time.time()
    claims = await store.claim(["q"], "w1", LONG, limit=2)
    assert [c.job.payload["i"] for c in claims] == [0, 1]
    for c in claims:
        assert c.job.state is State.RUNNING
        assert c.job.attempt == 1
        assert c.job.owner == "w1"
        assert c.job.started_at is not None
        assert c.job.started_at >= before - 0.01
        stored = await store.get(c.job.id)
        assert stored.state is State.RUNNING
        assert stored.owner == "w1"
        assert stored.attempt == 1
    assert len({c.token for c in claims}) == 2  # every claim has its own fencing token
    assert [c.job.payload["i"] for c in await store.claim(["q"], "w2", LONG, limit=10)] == [2, 3, 4]
    assert await store.claim(["q"], "w1", LONG, limit=0) == []
    assert await store.claim([], "w1", LONG) == []
    assert await store.claim(["elsewhere"], "w1", LONG) == []


async def test_reclaim_after_retry_gets_new_token_and_attempt(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=3))
    first = await claim_one(store)
    assert await store.fail(job.id, first.token, "boom", retry=True)
    second = await claim_one(store, w="w2")
    assert second.job.attempt == 2
    assert second.token != first.token
    assert not await store.finish(job.id, first.token, {"stale": True})
    assert await store.finish(job.id, second.token, {"fresh": True})
    assert (await store.get(job.id)).result == {"fresh": True}


async def test_concurrent_claimers_get_disjoint_jobs(store_factory: Factory) -> None:
    stores = [await opened(store_factory) for _ in range(3)]
    try:
        ids = {(await stores[0].submit(new(payload={"i": i}))).id for i in range(150)}

        async def drain(s: JobStore, name: str) -> list[str]:
            got: list[str] = []
            while claims := await s.claim(["q"], name, LONG, limit=3):
                got += [c.job.id for c in claims]
                await asyncio.sleep(0)
            return got

        results = await asyncio.gather(
            *(drain(s, f"w{i}") for i, s in enumerate(stores) for _ in range(2))
        )
        flat = [i for r in results for i in r]
        assert len(flat) == len(set(flat)) == 150
        assert set(flat) == ids
    finally:
        for s in stores:
            await s.close()


async def test_claim_max_training_skips_the_training_jobs_past_it_in_place(
    store: JobStore,
) -> None:
    infer: dict[str, Any] = {"job_type": JobType.INFERENCE}
    i1 = await store.submit(new(**infer))
    t1 = await store.submit(new())
    i2 = await store.submit(new(**infer))
    t2 = await store.submit(new())
    i3 = await store.submit(new(**infer))
    first = await store.claim(["q"], "w1", LONG, limit=10, max_training=1)
    assert [c.job.id for c in first] == [i1.id, t1.id, i2.id, i3.id]  # t2 waits for a slot
    assert [c.job.id for c in await store.claim(["q"], "w1", LONG, 10, max_training=0)] == []
    rest = await store.claim(["q"], "w1", LONG, limit=10, max_training=5)
    assert [c.job.id for c in rest] == [t2.id]


async def test_a_training_job_at_the_head_does_not_hold_back_inference_behind_it(
    store: JobStore,
) -> None:
    infer: dict[str, Any] = {"job_type": JobType.INFERENCE}
    heads = [await store.submit(new(priority=5)) for _ in range(3)]
    i1 = await store.submit(new(**infer))
    i2 = await store.submit(new("other", **infer))
    i3 = await store.submit(new(**infer))
    busy = await store.claim(["q", "other"], "w1", LONG, limit=2, max_training=0)
    assert [c.job.id for c in busy] == [i1.id, i2.id]
    busy = await store.claim(["q", "other"], "w1", LONG, limit=2, max_training=0)
    assert [c.job.id for c in busy] == [i3.id]
    for head in heads:
        assert (await store.get(head.id)).state is State.PENDING
    free = await store.claim(["q"], "w2", LONG, limit=10, max_training=3)
    assert [c.job.id for c in free] == [h.id for h in heads]  # their places were kept


# -- fencing ---------------------------------------------------------------------------------------
async def test_wrong_token_changes_nothing(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    before = await store.get(job.id)
    bad = c.token + "x"
    assert not await store.finish(job.id, bad, {"x": 1}, log="l", model=model("m1", job.id))
    assert not await store.fail(job.id, bad, "boom")
    assert not await store.fail(job.id, bad, "boom", retry=True)
    renewed = await store.renew("w1", {job.id: (bad, Progress(fraction=0.5))}, LONG)
    assert renewed == {job.id: Renewal.LOST}
    assert await store.get(job.id) == before
    with pytest.raises(errors.ModelNotFound):
        await store.get_model("m1")
    assert not await store.finish("job_missing", c.token, {})
    assert not await store.fail("job_missing", c.token, "x")


async def test_renew_extends_lease_and_applies_progress(store: JobStore) -> None:
    job = await store.submit(new())
    c = await store.claim(["q"], "w1", SHORT)
    token = c[0].token
    for _ in range(3):  # renewing keeps it alive well past the original lease
        await asyncio.sleep(SHORT)
        assert await store.renew("w1", {job.id: (token, None)}, 1.0) == {job.id: Renewal.OK}
        assert await store.rescue_expired() == []
    progress = Progress(fraction=0.4, metrics={"loss": 0.3}, history=[{"epoch": 1, "loss": 0.3}])
    assert await store.renew("w1", {job.id: (token, progress)}, LONG) == {job.id: Renewal.OK}
    got = await store.get(job.id)
    assert got.progress == pytest.approx(0.4)
    assert got.metrics == {"loss": 0.3}
    assert got.history == [{"epoch": 1, "loss": 0.3}]
    # a partial report changes only what it carries
    assert await store.renew("w1", {job.id: (token, Progress(fraction=0.6))}, LONG) == {
        job.id: Renewal.OK
    }
    got = await store.get(job.id)
    assert got.progress == pytest.approx(0.6)
    assert got.metrics == {"loss": 0.3}
    assert got.state is State.RUNNING


async def test_renew_many_jobs_at_once(store: JobStore) -> None:
    a, b, c = [await store.submit(new()) for _ in range(3)]
    claims = {cl.job.id: cl.token for cl in await store.claim(["q"], "w1", LONG, limit=3)}
    await store.cancel(b.id)
    result = await store.renew(
        "w1",
        {
            a.id: (claims[a.id], Progress(fraction=0.5)),
            b.id: (claims[b.id], Progress(fraction=0.5)),
            c.id: ("bogus:1", Progress(fraction=0.5)),
            "job_missing": ("bogus:1", None),
        },
        LONG,
    )
    assert result == {
        a.id: Renewal.OK,
        b.id: Renewal.CANCEL,
        c.id: Renewal.LOST,
        "job_missing": Renewal.LOST,
    }
    assert (await store.get(a.id)).progress == pytest.approx(0.5)
    assert (await store.get(b.id)).progress == 0.0
    assert (await store.get(c.id)).progress == 0.0


async def test_stale_owner_after_rescue_cannot_write(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=3))
    old = (await store.claim(["q"], "w1", SHORT))[0]
    await asyncio.sleep(EXPIRE)
    assert await store.rescue_expired() == [(job.id, State.PENDING)]
    rescued = await store.get(job.id)
    assert rescued.state is State.PENDING
    assert rescued.owner is None
    assert "worker lost" in (rescued.error or "")
    # the lost worker comes back before anyone else claims: still fenced
    assert await store.renew("w1", {job.id: (old.token, Progress(fraction=0.9))}, LONG) == {
        job.id: Renewal.LOST
    }
    assert not await store.finish(job.id, old.token, {"stale": True}, model=model("m", job.id))
    assert not await store.fail(job.id, old.token, "stale")
    assert await store.get(job.id) == rescued
    new_claim = await claim_one(store, w="w2")
    assert new_claim.job.attempt == 2
    assert new_claim.job.owner == "w2"
    assert not await store.finish(job.id, old.token, {"stale": True})
    assert await store.renew("w1", {job.id: (old.token, None)}, LONG) == {job.id: Renewal.LOST}
    assert await store.finish(job.id, new_claim.token, {"fresh": True})
    done = await store.get(job.id)
    assert done.state is State.COMPLETED
    assert done.result == {"fresh": True}
    assert done.error is None
    assert done.progress == 1.0
    with pytest.raises(errors.ModelNotFound):
        await store.get_model("m")


# -- rescue ----------------------------------------------------------------------------------------
async def test_rescue_requeues_then_fails_after_max_attempts(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=2))
    live = await store.submit(new("other"))
    await store.claim(["other"], "w9", LONG)  # a healthy lease is never rescued
    await store.claim(["q"], "w1", SHORT)
    await asyncio.sleep(EXPIRE)
    assert await store.rescue_expired() == [(job.id, State.PENDING)]
    assert await store.rescue_expired() == []  # a job is rescued once per expiry
    c2 = (await store.claim(["q"], "w2", SHORT))[0]
    assert c2.job.attempt == 2
    await asyncio.sleep(EXPIRE)
    assert await store.rescue_expired() == [(job.id, State.FAILED)]
    failed = await store.get(job.id)
    assert failed.state is State.FAILED
    assert failed.finished_at is not None
    assert "worker lost" in (failed.error or "")
    assert "2 attempt" in (failed.error or "")
    assert await store.claim(["q"], "w3", LONG) == []
    assert (await store.get(live.id)).state is State.RUNNING


async def test_rescue_fails_after_max_stalls(store_factory: Factory) -> None:
    s = await opened(store_factory, max_stalls=1)
    try:
        job = await s.submit(new(max_attempts=10))
        await s.claim(["q"], "w1", SHORT)
        await asyncio.sleep(EXPIRE)
        assert await s.rescue_expired() == [(job.id, State.PENDING)]
        await s.claim(["q"], "w1", SHORT)
        await asyncio.sleep(EXPIRE)
        assert await s.rescue_expired() == [(job.id, State.FAILED)]
        assert "worker lost" in ((await s.get(job.id)).error or "")
    finally:
        await s.close()


async def test_concurrent_rescuers_rescue_each_job_once(store_factory: Factory) -> None:
    stores = [await opened(store_factory) for _ in range(4)]
    try:
        ids = {(await stores[0].submit(new(max_attempts=5))).id for _ in range(20)}
        await stores[0].claim(["q"], "w1", SHORT, limit=20)
        await asyncio.sleep(EXPIRE)
        results = await asyncio.gather(*(s.rescue_expired() for s in stores for _ in range(3)))
        rescued = [job_id for r in results for job_id, state in r if state is State.PENDING]
        assert sorted(rescued) == sorted(ids)
        claims = await stores[1].claim(["q"], "w2", LONG, limit=50)
        assert {c.job.attempt for c in claims} == {2}
        assert len(claims) == 20
    finally:
        for s in stores:
            await s.close()


# -- fail ------------------------------------------------------------------------------------------
async def test_fail_with_retry_then_final_failure(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=2))
    c1 = await claim_one(store)
    assert await store.fail(job.id, c1.token, "flaky", retry=True, log="attempt 1")
    back = await store.get(job.id)
    assert back.state is State.PENDING
    assert back.error == "flaky"
    assert back.owner is None
    assert back.attempt == 1
    assert back.log == "attempt 1"
    assert not await store.fail(job.id, c1.token, "again")  # the old claim is spent
    c2 = await claim_one(store)
    assert await store.fail(job.id, c2.token, "flaky again", retry=True)
    final = await store.get(job.id)
    assert final.state is State.FAILED
    assert final.error == "flaky again"
    assert final.finished_at is not None
    assert final.attempt == 2


async def test_fail_without_retry_is_final(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=5))
    c = await claim_one(store)
    assert await store.fail(job.id, c.token, "bad input", log="trace")
    got = await store.get(job.id)
    assert got.state is State.FAILED
    assert got.error == "bad input"
    assert got.log == "trace"
    assert await store.claim(["q"], "w1", LONG) == []
