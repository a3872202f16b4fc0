"""The JobStore contract (store/base.py) for clients: submit, read, list, durations, health and
durability, on every backend in conftest.BACKENDS."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aijobs import errors
from aijobs.jobs import (
    JobType,
    State,
)
from aijobs.store.base import JobStore
from tests.contract.support import (
    LONG,
    Factory,
    claim_one,
    model,
    new,
    opened,
)
from tests.contract.test_not_started import audit


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
    assert job.attempt == 0
    assert job.owner is None
    assert job.progress == 0.0
    assert before - 0.01 <= job.created_at <= time.time() + 0.01
    got = await store.get(job.id)
    assert got == job
    assert got.payload == {"data": [1, 2], "nested": {"a": None}}
    assert (got.priority, got.max_attempts, got.timeout_seconds) == (3, 5, 12.5)
    assert (got.queue, got.model_type, got.description) == ("sklearn", "random_forest", "d")


async def test_submit_answers_the_job_as_stored(store: JobStore) -> None:
    """What submit answers is what a read of the job returns, every field, whichever optional
    fields the job has (a store may build its answer from what it sent instead of reading)."""
    jobs = [
        new(
            "q",
            job_type=JobType.INFERENCE,
            model_id="m1",
            principal="alice",
            priority=-(2**40),  # clamped in the queue order, kept as given in the job
            payload={"x": "é ✓", "f": 1.5, "l": [True, None, 10**20], "": {}},
        ),
        new("q", max_attempts=1, timeout_seconds=3.0, description=""),
    ]
    for sent in jobs:
        job = await store.submit(sent)
        assert await store.get(job.id) == job


async def test_a_job_whose_model_must_exist_is_refused_without_it(store: JobStore) -> None:
    """require_model: an inference job naming no stored model (never made, or deleted since its
    record was read) is refused in the submit's own step, and nothing of it is stored; an
    idempotent retry of a job accepted before still gets that job."""
    await store.add_model(model("m1", "j1"))
    kept = await store.submit(
        new(job_type=JobType.INFERENCE, model_id="m1"), idempotency_key="k", require_model=True
    )
    await store.delete_model("m1")
    for model_id in ("m1", "never-made"):
        with pytest.raises(errors.ModelNotFound, match=f"model {model_id} not found"):
            await store.submit(new(job_type=JobType.INFERENCE, model_id=model_id), None, None, True)
    retried = await store.submit(
        new(job_type=JobType.INFERENCE, model_id="m1"), idempotency_key="k", require_model=True
    )
    assert retried == kept
    assert (await store.list_jobs())[1] == 1
    assert await store.queue_depths() == {"q": {"pending": 1, "running": 0}}
    # Without require_model the store takes the job as it comes (the caller checked the model).
    await store.submit(new(job_type=JobType.INFERENCE, model_id="never-made"))
    assert (await store.list_jobs())[1] == 2
    await audit(store)


async def test_get_missing_raises(store: JobStore) -> None:
    with pytest.raises(errors.JobNotFound, match="job job_nope not found"):
        await store.get("job_nope")


async def test_list_newest_first_with_pagination_and_total(store: JobStore) -> None:
    ids = [(await store.submit(new(payload={"i": i}))).id for i in range(7)]
    newest_first = ids[::-1]
    page, total = await store.list_jobs()
    assert [j.id for j in page] == newest_first
    assert total == 7
    page, total = await store.list_jobs(limit=3, offset=2)
    assert [j.id for j in page] == newest_first[2:5]
    assert total == 7
    page, total = await store.list_jobs(limit=3, offset=6)
    assert [j.id for j in page] == newest_first[6:]
    assert total == 7
    page, total = await store.list_jobs(limit=3, offset=50)
    assert page == []
    assert total == 7


async def test_list_filters_by_state(store: JobStore) -> None:
    ids = [(await store.submit(new())).id for _ in range(5)]
    c = await claim_one(store)  # the oldest
    assert c.job.id == ids[0]
    await store.cancel(ids[3])
    pending, n_pending = await store.list_jobs(state=State.PENDING)
    assert [j.id for j in pending] == [ids[4], ids[2], ids[1]]
    assert n_pending == 3
    running, n_running = await store.list_jobs(state=State.RUNNING)
    assert [j.id for j in running] == [ids[0]]
    assert n_running == 1
    cancelled, n_cancelled = await store.list_jobs(state=State.CANCELLED, limit=10)
    assert [j.id for j in cancelled] == [ids[3]]
    assert n_cancelled == 1
    done, n_done = await store.list_jobs(state=State.COMPLETED)
    assert done == []
    assert n_done == 0
    page, total = await store.list_jobs(state=State.PENDING, limit=1, offset=1)
    assert [j.id for j in page] == [ids[2]]
    assert total == 3
    _, total = await store.list_jobs()
    assert total == 5


async def test_list_reads_rows_only_and_get_reads_all(store: JobStore) -> None:
    job = await store.submit(new(payload={"big": "x" * 1000}, description="d"))
    c = await claim_one(store)
    assert await store.finish(job.id, c.token, {"ok": True}, log="line1\nline2\n")
    (listed,), _ = await store.list_jobs()
    assert (listed.id, listed.state, listed.queue) == (job.id, State.COMPLETED, "q")
    assert (listed.log, listed.result, listed.payload, listed.description) == (None, None, {}, None)
    got = await store.get(job.id)
    assert (got.result, got.payload, got.description) == ({"ok": True}, {"big": "x" * 1000}, "d")
    assert (await store.get(job.id)).log == "line1\nline2\n"


async def test_idempotency_key_returns_first_job(store: JobStore) -> None:
    a = await store.submit(new(payload={"first": 1}, timeout_seconds=2.5), idempotency_key="k1")
    b = await store.submit(new(payload={"first": 1}, timeout_seconds=2.5), idempotency_key="k1")
    assert b == a
    assert b.payload == {"first": 1}
    c = await store.submit(new(), idempotency_key="k2")
    d = await store.submit(new())
    e = await store.submit(new())
    assert len({a.id, c.id, d.id, e.id}) == 4
    _, total = await store.list_jobs()
    assert total == 4
    # the key still answers once the first job has moved on
    await store.cancel(a.id)
    again = await store.submit(new(payload={"first": 1}, timeout_seconds=2.5), idempotency_key="k1")
    assert again.id == a.id
    assert again.state is State.CANCELLED


@pytest.mark.parametrize(
    "other",
    [
        {"payload": {"first": 2}},
        {"payload": {"first": 1, "more": None}},
        {"priority": 9},
        {"timeout_seconds": 3.0},
        {"job_type": JobType.INFERENCE},
    ],
)
async def test_idempotency_key_sent_with_another_request_is_refused(
    store: JobStore, other: dict[str, Any]
) -> None:
    asked: dict[str, Any] = {"payload": {"first": 1}, "timeout_seconds": 2.5}
    a = await store.submit(new(**asked), idempotency_key="k1")
    with pytest.raises(errors.IdempotencyKeyReused, match=a.id):
        await store.submit(new(**(asked | other)), idempotency_key="k1")
    assert (await store.list_jobs())[1] == 1
    assert (await store.submit(new(**asked), idempotency_key="k1")).id == a.id


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
    assert 0.249 <= d[0] < 10
    assert 0.049 <= d[1] < d[0]
    assert len(await store.recent_durations(JobType.TRAINING, None, "q")) == 1
    assert len(await store.recent_durations(JobType.TRAINING, "rf", "q", limit=1)) == 1
    assert await store.recent_durations(JobType.TRAINING, "nothing", "q") == []


# -- health and durability -------------------------------------------------------------------------
async def test_health(store: JobStore) -> None:
    await store.submit(new())
    h = await store.health()
    assert h["healthy"] is True
    assert h["store"] == store.kind
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
        assert got.state is State.COMPLETED
        assert got.result == {"r": 1}
        assert got.log == "log"
        assert (await s2.get(b.id)).state is State.PENDING
        assert (await s2.get_model("m")).job_id == a.id
        assert (await s2.submit(new(payload={"keep": "me"}), idempotency_key="k")).id == a.id
        assert (await s2.list_jobs())[1] == 2
        assert [cl.job.id for cl in await s2.claim(["q"], "w", LONG)] == [b.id]
    finally:
        await s2.close()
