"""The JobStore contract (store/base.py), run against every backend in conftest.BACKENDS.

Written against the protocol only; the one SQLite-specific test (several OS processes on one
file) says so in its name and skips for other backends. Leases are real and short (tens of ms):
backends take time from their own clock (time.time() for SQLite, TIME for Redis).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aijobs import errors
from aijobs.jobs import (
    Claim,
    Finish,
    JobType,
    ModelRecord,
    NewJob,
    Progress,
    Renewal,
    State,
    WorkerInfo,
)
from aijobs.store.base import JobStore

Factory = Callable[..., JobStore]
SHORT = 0.05  # a lease that expires during the test
EXPIRE = 0.12  # how long to wait for SHORT to have expired
LONG = 60.0


def new(queue: str = "q", priority: int = 0, **kw: Any) -> NewJob:
    kw.setdefault("job_type", JobType.TRAINING)
    kw.setdefault("payload", {"n": 1})
    return NewJob(queue=queue, priority=priority, **kw)


def model(model_id: str, job_id: str, created_at: float | None = None) -> ModelRecord:
    return ModelRecord(
        model_id=model_id,
        framework="sklearn",
        queue="q",
        model_type="random_forest",
        path=f"/models/{model_id}",
        job_id=job_id,
        metrics={"accuracy": 0.9},
        created_at=time.time() if created_at is None else created_at,
    )


def worker(worker_id: str = "w1") -> WorkerInfo:
    now = time.time()
    return WorkerInfo(
        worker_id=worker_id, host="h", pid=1, queues=["q"], started_at=now, last_seen=now
    )


async def claim_one(store: JobStore, queue: str = "q", lease: float = LONG, w: str = "w1") -> Claim:
    claims = await store.claim([queue], w, lease)
    assert len(claims) == 1, claims
    return claims[0]


async def opened(factory: Factory, **options: Any) -> JobStore:
    s = factory(**options)
    await s.open()
    return s


# -- submit / get / list -------------------------------------------------------------------------
async def test_submit_and_get(store: JobStore) -> None:
    before = time.time()
    job = await store.submit(
        new(
            "sklearn",
            priority=3,
            payload={"data": [1, 2], "nested": {"a": None}},
            model_type="random_forest",
            description="d",
            max_attempts=5,
            timeout_seconds=12.5,
        )
    )
    assert job.id.startswith("job_")
    assert job.state is State.PENDING
    assert job.attempt == 0 and job.owner is None and job.progress == 0.0
    assert before - 0.01 <= job.created_at <= time.time() + 0.01
    got = await store.get(job.id)
    assert got == job
    assert got.payload == {"data": [1, 2], "nested": {"a": None}}
    assert (got.priority, got.max_attempts, got.timeout_seconds) == (3, 5, 12.5)
    assert (got.queue, got.model_type, got.description) == ("sklearn", "random_forest", "d")


async def test_get_missing_raises(store: JobStore) -> None:
    with pytest.raises(errors.JobNotFound, match="job job_nope not found"):
        await store.get("job_nope")


async def test_list_newest_first_with_pagination_and_total(store: JobStore) -> None:
    ids = [(await store.submit(new(payload={"i": i}))).id for i in range(7)]
    newest_first = ids[::-1]
    page, total = await store.list_jobs()
    assert [j.id for j in page] == newest_first and total == 7
    page, total = await store.list_jobs(limit=3, offset=2)
    assert [j.id for j in page] == newest_first[2:5] and total == 7
    page, total = await store.list_jobs(limit=3, offset=6)
    assert [j.id for j in page] == newest_first[6:] and total == 7
    page, total = await store.list_jobs(limit=3, offset=50)
    assert page == [] and total == 7


async def test_list_filters_by_state(store: JobStore) -> None:
    ids = [(await store.submit(new())).id for _ in range(5)]
    c = await claim_one(store)  # the oldest
    assert c.job.id == ids[0]
    await store.cancel(ids[3])
    pending, n_pending = await store.list_jobs(state=State.PENDING)
    assert [j.id for j in pending] == [ids[4], ids[2], ids[1]] and n_pending == 3
    running, n_running = await store.list_jobs(state=State.RUNNING)
    assert [j.id for j in running] == [ids[0]] and n_running == 1
    cancelled, n_cancelled = await store.list_jobs(state=State.CANCELLED, limit=10)
    assert [j.id for j in cancelled] == [ids[3]] and n_cancelled == 1
    done, n_done = await store.list_jobs(state=State.COMPLETED)
    assert done == [] and n_done == 0
    page, total = await store.list_jobs(state=State.PENDING, limit=1, offset=1)
    assert [j.id for j in page] == [ids[2]] and total == 3
    _, total = await store.list_jobs()
    assert total == 5


async def test_list_omits_log_and_get_includes_it(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    assert await store.finish(job.id, c.token, {"ok": True}, log="line1\nline2\n")
    (listed,), _ = await store.list_jobs()
    assert listed.log is None and listed.result == {"ok": True}
    assert (await store.get(job.id)).log == "line1\nline2\n"


async def test_idempotency_key_returns_first_job(store: JobStore) -> None:
    a = await store.submit(new(payload={"first": 1}), idempotency_key="k1")
    b = await store.submit(new(payload={"second": 2}, priority=9), idempotency_key="k1")
    assert b == a and b.payload == {"first": 1}
    c = await store.submit(new(), idempotency_key="k2")
    d = await store.submit(new())
    e = await store.submit(new())
    assert len({a.id, c.id, d.id, e.id}) == 4
    _, total = await store.list_jobs()
    assert total == 4
    # the key still answers once the first job has moved on
    await store.cancel(a.id)
    again = await store.submit(new(), idempotency_key="k1")
    assert again.id == a.id and again.state is State.CANCELLED


async def test_idempotent_submit_under_concurrency(store_factory: Factory) -> None:
    stores = [await opened(store_factory) for _ in range(3)]
    try:
        jobs = await asyncio.gather(
            *(s.submit(new(), idempotency_key="same") for s in stores for _ in range(5))
        )
        assert len({j.id for j in jobs}) == 1
        _, total = await stores[0].list_jobs()
        assert total == 1
    finally:
        for s in stores:
            await s.close()


async def test_queue_depths(store: JobStore) -> None:
    assert await store.queue_depths() == {}
    for _ in range(3):
        await store.submit(new("a"))
    await store.submit(new("b"))
    done = await store.submit(new("c"))
    await claim_one(store, "a")
    c = await claim_one(store, "c")
    assert await store.finish(done.id, c.token, {})
    assert await store.queue_depths() == {
        "a": {"pending": 2, "running": 1},
        "b": {"pending": 1, "running": 0},
    }


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
        assert c.job.state is State.RUNNING and c.job.attempt == 1 and c.job.owner == "w1"
        assert c.job.started_at is not None and c.job.started_at >= before - 0.01
        stored = await store.get(c.job.id)
        assert stored.state is State.RUNNING and stored.owner == "w1" and stored.attempt == 1
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
    assert second.job.attempt == 2 and second.token != first.token
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


def _process_claimer(path: str, barrier: Any, out: str, name: str) -> None:
    """Runs in a child process: claims from the shared SQLite file and finishes what it got."""
    from aijobs.store.sqlite import SQLiteStore

    async def main() -> list[str]:
        s = SQLiteStore(path)
        await s.open()
        try:
            await s.claim(["warm-up"], name, LONG)  # first-call costs before the start line
            barrier.wait(30)
            got: list[str] = []
            while claims := await s.claim(["q"], name, LONG, limit=2):
                for c in claims:
                    got.append(c.job.id)
                    assert await s.finish(c.job.id, c.token, {"by": name})
                await asyncio.sleep(0.002)  # "work", so that the three claimers interleave
            return got
        finally:
            await s.close()

    Path(out).write_text(json.dumps(asyncio.run(main())))


async def test_sqlite_separate_processes_never_double_claim(
    backend: str, store: JobStore, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("several OS processes on one SQLite file")
    path = str(store.path)  # type: ignore[attr-defined]
    ids = {(await store.submit(new(payload={"i": i}))).id for i in range(400)}
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    outs = [str(tmp_path / f"claims-{i}.json") for i in range(2)]
    procs = [
        ctx.Process(target=_process_claimer, args=(path, barrier, outs[i], f"proc{i}"))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    try:
        await asyncio.to_thread(barrier.wait, 60)
        mine: list[str] = []  # the test process claims at the same time, through its own store
        while claims := await store.claim(["q"], "parent", LONG, limit=2):
            for c in claims:
                mine.append(c.job.id)
                assert await store.finish(c.job.id, c.token, {"by": "parent"})
            await asyncio.sleep(0.002)
        for p in procs:
            await asyncio.to_thread(p.join, 120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    theirs = [json.loads(Path(o).read_text()) for o in outs]
    # not vacuous: at least two OS processes really claimed from the file at the same time
    assert sum(1 for got in [mine, *theirs] if got) >= 2, [len(mine), *map(len, theirs)]
    flat = mine + [i for t in theirs for i in t]
    assert len(flat) == len(set(flat)) == 400 and set(flat) == ids
    _, done = await store.list_jobs(state=State.COMPLETED)
    assert done == 400
    for i, got in enumerate(theirs):
        for job_id in got[:5]:
            assert (await store.get(job_id)).result == {"by": f"proc{i}"}


async def test_claim_max_training_stops_at_the_first_training_job_past_it(
    store: JobStore,
) -> None:
    infer = {"job_type": JobType.INFERENCE}
    i1 = await store.submit(new(**infer))
    t1 = await store.submit(new())
    i2 = await store.submit(new(**infer))
    t2 = await store.submit(new())
    i3 = await store.submit(new(**infer))
    none = await store.claim(["q"], "w1", LONG, limit=10, max_training=1)
    assert [c.job.id for c in none] == [i1.id, t1.id, i2.id]  # stops at t2, never skips it
    assert [c.job.id for c in await store.claim(["q"], "w1", LONG, 10, max_training=0)] == []
    rest = await store.claim(["q"], "w1", LONG, limit=10, max_training=5)
    assert [c.job.id for c in rest] == [t2.id, i3.id]


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
    assert got.metrics == {"loss": 0.3} and got.history == [{"epoch": 1, "loss": 0.3}]
    # a partial report changes only what it carries
    assert await store.renew("w1", {job.id: (token, Progress(fraction=0.6))}, LONG) == {
        job.id: Renewal.OK
    }
    got = await store.get(job.id)
    assert got.progress == pytest.approx(0.6) and got.metrics == {"loss": 0.3}
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
    assert rescued.state is State.PENDING and rescued.owner is None
    assert "worker lost" in (rescued.error or "")
    # the lost worker comes back before anyone else claims: still fenced
    assert await store.renew("w1", {job.id: (old.token, Progress(fraction=0.9))}, LONG) == {
        job.id: Renewal.LOST
    }
    assert not await store.finish(job.id, old.token, {"stale": True}, model=model("m", job.id))
    assert not await store.fail(job.id, old.token, "stale")
    assert await store.get(job.id) == rescued
    new_claim = await claim_one(store, w="w2")
    assert new_claim.job.attempt == 2 and new_claim.job.owner == "w2"
    assert not await store.finish(job.id, old.token, {"stale": True})
    assert await store.renew("w1", {job.id: (old.token, None)}, LONG) == {job.id: Renewal.LOST}
    assert await store.finish(job.id, new_claim.token, {"fresh": True})
    done = await store.get(job.id)
    assert done.state is State.COMPLETED and done.result == {"fresh": True}
    assert done.error is None and done.progress == 1.0
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
    assert failed.state is State.FAILED and failed.finished_at is not None
    assert "worker lost" in (failed.error or "") and "2 attempt" in (failed.error or "")
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
        assert {c.job.attempt for c in claims} == {2} and len(claims) == 20
    finally:
        for s in stores:
            await s.close()


# -- fail ------------------------------------------------------------------------------------------
async def test_fail_with_retry_then_final_failure(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=2))
    c1 = await claim_one(store)
    assert await store.fail(job.id, c1.token, "flaky", retry=True, log="attempt 1")
    back = await store.get(job.id)
    assert back.state is State.PENDING and back.error == "flaky" and back.owner is None
    assert back.attempt == 1 and back.log == "attempt 1"
    assert not await store.fail(job.id, c1.token, "again")  # the old claim is spent
    c2 = await claim_one(store)
    assert await store.fail(job.id, c2.token, "flaky again", retry=True)
    final = await store.get(job.id)
    assert final.state is State.FAILED and final.error == "flaky again"
    assert final.finished_at is not None and final.attempt == 2


async def test_fail_without_retry_is_final(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=5))
    c = await claim_one(store)
    assert await store.fail(job.id, c.token, "bad input", log="trace")
    got = await store.get(job.id)
    assert got.state is State.FAILED and got.error == "bad input" and got.log == "trace"
    assert await store.claim(["q"], "w1", LONG) == []


# -- cancel ----------------------------------------------------------------------------------------
async def test_cancel_pending(store: JobStore) -> None:
    job = await store.submit(new())
    cancelled = await store.cancel(job.id)
    assert cancelled.state is State.CANCELLED and cancelled.error == "Job cancelled by user"
    assert cancelled.finished_at is not None
    assert (await store.get(job.id)).state is State.CANCELLED
    assert await store.claim(["q"], "w1", LONG) == []
    custom = await store.cancel((await store.submit(new())).id, reason="not needed")
    assert custom.error == "not needed"


async def test_cancel_running_is_immediate_and_fences_the_worker(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    cancelled = await store.cancel(job.id)
    assert cancelled.state is State.CANCELLED and cancelled.cancel_requested
    assert cancelled.error == "Job cancelled by user"
    assert (await store.get(job.id)).state is State.CANCELLED
    # the owner hears CANCEL on renew, and its progress does not land
    assert await store.renew("w1", {job.id: (c.token, Progress(fraction=0.7))}, LONG) == {
        job.id: Renewal.CANCEL
    }
    assert await store.renew("w1", {job.id: (c.token + "x", None)}, LONG) == {job.id: Renewal.LOST}
    assert not await store.finish(job.id, c.token, {"late": True}, model=model("m", job.id))
    assert not await store.fail(job.id, c.token, "killed", retry=True)
    got = await store.get(job.id)
    assert got.state is State.CANCELLED and got.result is None and got.progress == 0.0
    assert got.error == "Job cancelled by user"
    with pytest.raises(errors.ModelNotFound):
        await store.get_model("m")
    await asyncio.sleep(0)
    assert await store.rescue_expired() == []
    assert (await store.queue_depths()) == {}


async def test_cancel_terminal_and_missing(store: JobStore) -> None:
    done = await store.submit(new())
    c = await claim_one(store)
    assert await store.finish(done.id, c.token, {})
    with pytest.raises(errors.NotCancellable, match=f"job {done.id} is already completed"):
        await store.cancel(done.id)
    gone = await store.submit(new())
    await store.cancel(gone.id)
    with pytest.raises(errors.NotCancellable, match="already cancelled"):
        await store.cancel(gone.id)
    with pytest.raises(errors.JobNotFound, match="job job_missing not found"):
        await store.cancel("job_missing")


async def test_terminal_states_never_change(store: JobStore) -> None:
    jobs = [await store.submit(new(max_attempts=3)) for _ in range(3)]
    claims = await store.claim(["q"], "w1", SHORT, limit=3)
    tokens = {c.job.id: c.token for c in claims}
    assert await store.finish(jobs[0].id, tokens[jobs[0].id], {"r": 1})
    assert await store.fail(jobs[1].id, tokens[jobs[1].id], "nope")
    await store.cancel(jobs[2].id)
    before = [await store.get(j.id) for j in jobs]
    await asyncio.sleep(EXPIRE)  # every lease has expired by now
    assert await store.rescue_expired() == []
    for j in jobs:
        t = tokens[j.id]
        assert not await store.finish(j.id, t, {"r": 2})
        assert not await store.fail(j.id, t, "x", retry=True)
        assert not await store.fail(j.id, t, "x")
        with pytest.raises(errors.NotCancellable):
            await store.cancel(j.id)
    assert await store.claim(["q"], "w2", LONG, limit=10) == []
    assert [await store.get(j.id) for j in jobs] == before
    assert [b.state for b in before] == [State.COMPLETED, State.FAILED, State.CANCELLED]


# -- finish and models -----------------------------------------------------------------------------
async def test_finish_registers_model_atomically(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    m = model("model_1", job.id)
    assert await store.finish(job.id, c.token, {"model_id": "model_1"}, log="ok", model=m)
    got = await store.get(job.id)
    assert got.state is State.COMPLETED and got.result == {"model_id": "model_1"}
    assert got.progress == 1.0 and got.finished_at is not None and got.log == "ok"
    assert await store.get_model("model_1") == m
    assert not await store.finish(job.id, c.token, {"again": 1}, model=model("model_2", job.id))
    with pytest.raises(errors.ModelNotFound):
        await store.get_model("model_2")
    assert (await store.get(job.id)).result == {"model_id": "model_1"}


async def test_model_registry(store: JobStore) -> None:
    assert await store.list_models() == []
    now = time.time()
    old, mid, new_ = model("a", "j1", now - 20), model("b", "j2", now - 10), model("c", "j3", now)
    for m in (mid, new_, old):
        await store.add_model(m)
    assert await store.list_models() == [new_, mid, old]
    assert await store.get_model("b") == mid
    with pytest.raises(errors.ModelNotFound, match="model zzz not found"):
        await store.get_model("zzz")


async def test_finish_many_commits_each_job_on_its_own(store: JobStore) -> None:
    jobs = [await store.submit(new()) for _ in range(3)]
    a, b, c = await store.claim(["q"], "w1", LONG, limit=3)
    answers = await store.finish_many(
        [
            Finish(a.job.id, a.token, {"n": 1}, log="log a", model=model("m_a", a.job.id)),
            Finish(b.job.id, "stale-token", {"n": 2}),
            Finish(c.job.id, c.token, {"n": 3}),
        ]
    )
    assert answers == [True, False, True]
    done = {j.id: await store.get(j.id) for j in jobs}
    assert done[a.job.id].state is State.COMPLETED and done[a.job.id].log == "log a"
    assert done[a.job.id].result == {"n": 1}
    assert (await store.get_model("m_a")).job_id == a.job.id
    assert done[b.job.id].state is State.RUNNING and done[b.job.id].result is None
    assert done[c.job.id].state is State.COMPLETED
    assert await store.finish_many([]) == []


async def test_wait_terminal_wakes_when_the_job_ends(store: JobStore) -> None:
    job = await store.submit(new())
    waiting = asyncio.create_task(store.wait_terminal(job.id, 30))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    (c,) = await store.claim(["q"], "w1", LONG)
    await asyncio.sleep(0.05)
    assert not waiting.done()  # running is not the end
    started = time.monotonic()
    assert await store.finish(c.job.id, c.token, {"ok": True})
    ended = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 5
    assert ended.state is State.COMPLETED and ended.result == {"ok": True}


async def test_wait_terminal_many_waiters_cancel_and_timeout(store: JobStore) -> None:
    job = await store.submit(new())
    other = await store.submit(new())
    waiters = [asyncio.create_task(store.wait_terminal(job.id, 30)) for _ in range(5)]
    await asyncio.sleep(0.1)
    await store.cancel(job.id)
    for ended in await asyncio.wait_for(asyncio.gather(*waiters), 5):
        assert ended.state is State.CANCELLED
    t0 = time.monotonic()
    still = await store.wait_terminal(other.id, 0.3)
    assert still.state is State.PENDING and time.monotonic() - t0 >= 0.25
    assert (await store.wait_terminal(job.id, 10)).state is State.CANCELLED  # at once
    with pytest.raises(errors.JobNotFound):
        await store.wait_terminal("job_missing", 1)


# -- workers ---------------------------------------------------------------------------------------
async def test_workers_live_ttl_and_unregister(store: JobStore) -> None:
    await store.register_worker(worker("w1"))
    await store.register_worker(worker("w2"))
    await store.register_worker(worker("w1").model_copy(update={"running": 2}))  # upsert
    live = {w.worker_id: w for w in await store.live_workers(10)}
    assert set(live) == {"w1", "w2"} and live["w1"].running == 2
    await asyncio.sleep(0.4)
    assert await store.live_workers(0.3) == []
    await store.register_worker(worker("w2"))
    assert [w.worker_id for w in await store.live_workers(0.3)] == ["w2"]
    # renewing leases is also a heartbeat for a registered worker
    await store.renew("w1", {}, LONG)
    assert {w.worker_id for w in await store.live_workers(0.3)} == {"w1", "w2"}
    await store.unregister_worker("w1")
    await store.unregister_worker("never-registered")
    assert [w.worker_id for w in await store.live_workers(10)] == ["w2"]


# -- durations -------------------------------------------------------------------------------------
async def test_recent_durations(store: JobStore) -> None:
    async def run(queue: str, seconds: float, **kw: Any) -> None:
        job = await store.submit(new(queue, **kw))
        c = await claim_one(store, queue)
        await asyncio.sleep(seconds)
        assert await store.finish(job.id, c.token, {})

    await run("q", 0.05, model_type="rf")
    await run("q", 0.25, model_type="rf")
    await run("q", 0.01, model_type="svm")  # other model type
    await run("other", 0.01, model_type="rf")  # other queue
    await run("q", 0.01, model_type="rf", job_type=JobType.INFERENCE)  # other job type
    await run("q", 0.01)  # no model type
    failed = await store.submit(new(model_type="rf"))
    c = await claim_one(store)
    assert await store.fail(failed.id, c.token, "x")  # not completed: not counted
    d = await store.recent_durations(JobType.TRAINING, "rf", "q")
    assert len(d) == 2
    # newest first; each at least as long as the job ran (ms resolution), and sane
    assert 0.249 <= d[0] < 10 and 0.049 <= d[1] < d[0]
    assert len(await store.recent_durations(JobType.TRAINING, None, "q")) == 1
    assert len(await store.recent_durations(JobType.TRAINING, "rf", "q", limit=1)) == 1
    assert await store.recent_durations(JobType.TRAINING, "nothing", "q") == []


# -- health and durability -------------------------------------------------------------------------
async def test_health(store: JobStore) -> None:
    await store.submit(new())
    h = await store.health()
    assert h["healthy"] is True and h["store"] == store.kind
    assert h["jobs"] == 1


async def test_health_of_closed_store_reports_instead_of_raising(store_factory: Factory) -> None:
    s = store_factory()
    h = await s.health()
    assert h["healthy"] is False


async def test_durable_across_close_and_reopen(store_factory: Factory) -> None:
    s = await opened(store_factory)
    a = await s.submit(new(payload={"keep": "me"}), idempotency_key="k")
    b = await s.submit(new())
    c = await claim_one(s)
    assert await s.finish(a.id, c.token, {"r": 1}, log="log", model=model("m", a.id))
    await s.close()
    await s.close()  # closing twice is harmless
    s2 = await opened(store_factory)
    try:
        got = await s2.get(a.id)
        assert got.state is State.COMPLETED and got.result == {"r": 1} and got.log == "log"
        assert (await s2.get(b.id)).state is State.PENDING
        assert (await s2.get_model("m")).job_id == a.id
        assert (await s2.submit(new(), idempotency_key="k")).id == a.id
        assert (await s2.list_jobs())[1] == 2
        assert [cl.job.id for cl in await s2.claim(["q"], "w", LONG)] == [b.id]
    finally:
        await s2.close()
