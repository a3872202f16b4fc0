"""The JobStore contract (store/base.py) for how jobs end (cancel, finish with its model) and for
the worker and model registries, on every backend in conftest.BACKENDS."""

from __future__ import annotations

import asyncio
import time

import pytest

from aijobs import errors
from aijobs.jobs import (
    Finish,
    Progress,
    Renewal,
    State,
)
from aijobs.store.base import JobStore
from tests.contract.support import (
    EXPIRE,
    LONG,
    SHORT,
    claim_one,
    model,
    new,
    worker,
)


# -- cancel ----------------------------------------------------------------------------------------
async def test_cancel_pending(store: JobStore) -> None:
    job = await store.submit(new())
    cancelled = await store.cancel(job.id)
    assert cancelled.state is State.CANCELLED
    assert cancelled.error == "Job cancelled by user"
    assert cancelled.finished_at is not None
    assert (await store.get(job.id)).state is State.CANCELLED
    assert await store.claim(["q"], "w1", LONG) == []
    custom = await store.cancel((await store.submit(new())).id, reason="not needed")
    assert custom.error == "not needed"


async def test_cancel_running_is_immediate_and_fences_the_worker(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    cancelled = await store.cancel(job.id)
    assert cancelled.state is State.CANCELLED
    assert cancelled.cancel_requested
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
    assert got.state is State.CANCELLED
    assert got.result is None
    assert got.progress == 0.0
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
    assert got.state is State.COMPLETED
    assert got.result == {"model_id": "model_1"}
    assert got.progress == 1.0
    assert got.finished_at is not None
    assert got.log == "ok"
    assert await store.get_model("model_1") == m
    assert not await store.finish(job.id, c.token, {"again": 1}, model=model("model_2", job.id))
    with pytest.raises(errors.ModelNotFound):
        await store.get_model("model_2")
    assert (await store.get(job.id)).result == {"model_id": "model_1"}


async def test_model_registry(store: JobStore) -> None:
    assert await store.list_models() == ([], 0)
    now = time.time()
    old, mid, new_ = model("a", "j1", now - 20), model("b", "j2", now - 10), model("c", "j3", now)
    for m in (mid, new_, old):
        await store.add_model(m)
    assert await store.list_models() == ([new_, mid, old], 3)
    assert await store.list_models(limit=1, offset=1) == ([mid], 3)
    assert await store.list_models(limit=5, offset=3) == ([], 3)
    assert await store.get_model("b") == mid
    with pytest.raises(errors.ModelNotFound, match="model zzz not found"):
        await store.get_model("zzz")
    assert await store.delete_model("b") == mid
    with pytest.raises(errors.ModelNotFound):
        await store.get_model("b")
    with pytest.raises(errors.ModelNotFound, match="model b not found"):
        await store.delete_model("b")
    assert await store.list_models() == ([new_, old], 2)


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
    assert done[a.job.id].state is State.COMPLETED
    assert done[a.job.id].log == "log a"
    assert done[a.job.id].result == {"n": 1}
    assert (await store.get_model("m_a")).job_id == a.job.id
    assert done[b.job.id].state is State.RUNNING
    assert done[b.job.id].result is None
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
    assert ended.state is State.COMPLETED
    assert ended.result == {"ok": True}


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
    assert still.state is State.PENDING
    assert time.monotonic() - t0 >= 0.25
    assert (await store.wait_terminal(job.id, 10)).state is State.CANCELLED  # at once
    with pytest.raises(errors.JobNotFound):
        await store.wait_terminal("job_missing", 1)


# -- workers ---------------------------------------------------------------------------------------
async def test_workers_live_ttl_and_unregister(store: JobStore) -> None:
    await store.register_worker(worker("w1"))
    await store.register_worker(worker("w2"))
    upsert = {"running": 2, "model_types": ["bert", "echo"]}
    await store.register_worker(worker("w1").model_copy(update=upsert))
    live = {w.worker_id: w for w in await store.live_workers(10)}
    assert set(live) == {"w1", "w2"}
    assert live["w1"].running == 2
    assert live["w1"].model_types == ["bert", "echo"]  # what its runtimes train, kept as sent
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


# -- hand-back -------------------------------------------------------------------------------------
async def test_a_job_handed_back_uncounted_keeps_its_attempts(store: JobStore) -> None:
    job = await store.submit(new(max_attempts=1))
    for _ in range(3):  # stopped for the worker's sake, never for its own: never spent
        c = await claim_one(store)
        assert c.job.attempt == 1
        assert await store.fail(job.id, c.token, "handed back", retry=True, count_attempt=False)
        back = await store.get(job.id)
        assert back.state is State.PENDING
        assert back.attempt == 0
        assert back.owner is None
        assert not await store.fail(job.id, c.token, "again", count_attempt=False)  # spent claim
    c = await claim_one(store)
    assert await store.fail(job.id, c.token, "flaky", retry=True)  # a counted retry: last one
    assert (await store.get(job.id)).state is State.FAILED


async def test_an_error_is_stored_as_text_every_store_can_encode(store: JobStore) -> None:
    job = await store.submit(new())
    c = await claim_one(store)
    long_tail = "y" * 20_000
    assert await store.fail(job.id, c.token, f"bad key '\ud800'\x00\n\tx{long_tail}")
    error = (await store.get(job.id)).error or ""
    assert error.startswith("bad key '\\ud800'\\x00\n\tx")  # named, escaped, lines kept
    assert error.encode("utf-8")
    assert len(error) < len(long_tail)  # bounded
