"""The JobStore contract for concurrent submissions from one client (one API process): the stores
send them together (SQLite: one transaction; Redis: one pipeline), and every caller still gets
its own answer: its job, its own refusal, or the job its idempotency key named first. None is
lost, none is undone by another's refusal, and every count stays exact."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aijobs import errors
from aijobs.jobs import Job, JobType, NewJob, PendingLimits, State
from aijobs.store.base import JobStore
from tests.contract.support import Factory, new, opened
from tests.contract.test_not_started import audit

N = 90  # concurrent submissions, three kinds of each


async def _mixed_burst(store: JobStore) -> tuple[list[Any], list[tuple[str, str | None]]]:
    """N concurrent submits: free ones to 'free', ones past a per-queue limit to 'full', and
    pairs of idempotency keys (the same request twice, or a different one the second time)."""
    full = PendingLimits(per_queue=5)
    calls = []
    kinds: list[tuple[str, str | None]] = []
    for i in range(N):
        if i % 3 == 0:
            calls.append(store.submit(new("free", payload={"i": i})))
            kinds.append(("free", None))
        elif i % 3 == 1:
            calls.append(store.submit(new("full", payload={"i": i}), limits=full))
            kinds.append(("full", None))
        else:
            key = f"key-{i // 6}"  # each key is sent twice
            payload = {"k": i // 6} if i % 6 == 2 else {"k": i // 6, "changed": i % 12 == 5}
            calls.append(store.submit(new("idem", payload=payload), idempotency_key=key))
            kinds.append(("idem", key))
    return await asyncio.gather(*calls, return_exceptions=True), kinds


async def test_a_burst_of_mixed_submits_each_gets_its_own_answer(
    store: JobStore, store_factory: Factory
) -> None:
    results, kinds = await _mixed_burst(store)
    assert not [r for r in results if isinstance(r, BaseException) and not _refusal(r)], results
    free = [r for r, (kind, _) in zip(results, kinds, strict=True) if kind == "free"]
    assert all(isinstance(j, Job) and j.queue == "free" for j in free)
    assert len({j.id for j in free}) == N // 3
    full = [r for r, (kind, _) in zip(results, kinds, strict=True) if kind == "full"]
    assert len([j for j in full if isinstance(j, Job)]) == 5
    assert all(isinstance(r, errors.QueueFull) for r in full if not isinstance(r, Job))

    by_key: dict[str, list[Any]] = {}
    for r, (_, key) in zip(results, kinds, strict=True):
        if key is not None:
            by_key.setdefault(key, []).append(r)
    idem_jobs = set()
    for key, (first, second) in by_key.items():
        # The first of a pair always makes its job; the second is the same request (the same
        # job again) or a different one (refused), whichever order the store ran them in.
        jobs = [r for r in (first, second) if isinstance(r, Job)]
        refused = [r for r in (first, second) if not isinstance(r, Job)]
        assert jobs, (key, first, second)
        assert all(isinstance(r, errors.IdempotencyKeyReused) for r in refused), refused
        assert len({j.id for j in jobs}) == 1
        idem_jobs.add(jobs[0].id)
    assert len(idem_jobs) == N // 6

    # Durable and visible to another client; every count exact.
    other = await opened(store_factory)
    try:
        made = {j.id for j in free} | {j.id for j in full if isinstance(j, Job)} | idem_jobs
        for job_id in made:
            assert (await other.get(job_id)).state is State.PENDING
        listed, total = await other.list_jobs(limit=1000)
        assert {j.id for j in listed} == made
        assert total == len(made) == N // 3 + 5 + N // 6
        depths = await other.queue_depths()
        assert {q: d["pending"] for q, d in depths.items()} == {
            "free": N // 3,
            "full": 5,
            "idem": N // 6,
        }
        stats = await other.job_stats()
        training = JobType.TRAINING.value
        assert stats.submitted == {
            (training, "free"): N // 3,
            (training, "full"): 5,
            (training, "idem"): N // 6,
        }
        await audit(other)
    finally:
        await other.close()


def _refusal(exc: BaseException) -> bool:
    return isinstance(exc, errors.QueueFull | errors.IdempotencyKeyReused)


async def test_a_refused_submit_in_a_group_undoes_nothing_of_the_others(store: JobStore) -> None:
    limits = PendingLimits(per_queue=1)
    first = await store.submit(new("one"), limits=limits)  # the queue is now full
    calls = [
        store.submit(new("one"), limits=limits) if i % 2 else store.submit(new("other"))
        for i in range(20)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, r in enumerate(results):
        if i % 2:
            assert isinstance(r, errors.QueueFull), r
        else:
            assert isinstance(r, Job), r
            assert r.queue == "other"
    assert (await store.queue_depths()) == {
        "one": {"pending": 1, "running": 0},
        "other": {"pending": 10, "running": 0},
    }
    assert (await store.get(first.id)).state is State.PENDING
    await audit(store)


async def test_a_cancelled_caller_leaves_the_group_intact(store: JobStore) -> None:
    """A caller that gives up (a client gone) never costs the others their jobs."""
    tasks = [asyncio.create_task(store.submit(new("q", payload={"i": i}))) for i in range(30)]
    await asyncio.sleep(0)  # they are all queued: the first is in flight
    for t in tasks[5:30:5]:
        t.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    jobs = [j for j in done if isinstance(j, Job)]
    assert len(jobs) >= 25  # the cancelled ones may or may not have made it in
    assert all(isinstance(j, Job | asyncio.CancelledError) for j in done), done
    listed, total = await store.list_jobs(limit=100)
    assert {j.id for j in jobs} <= {j.id for j in listed}
    assert total == len(listed) == (await store.queue_depths())["q"]["pending"]
    assert (await store.job_stats()).submitted == {(JobType.TRAINING.value, "q"): total}
    await audit(store)


async def test_a_submit_cancelled_in_flight_leaves_the_next_its_own_answer(
    store: JobStore,
) -> None:
    """A lone submit cancelled at any point of its round trip (a client gone): the next submit
    is answered its own job, never the reply meant for the one cancelled."""
    for steps in range(12):  # cancelled after 0, 1, ... turns of the event loop
        gone = asyncio.create_task(store.submit(new("q", payload={"gone": steps})))
        for _ in range(steps):
            await asyncio.sleep(0)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        await asyncio.sleep(0.002)  # the next job's created_at differs from the one cancelled
        job = await store.submit(new("q", payload={"after": steps}))
        assert await store.get(job.id) == job
    await audit(store)


async def test_submits_after_a_group_are_answered_too(store: JobStore) -> None:
    """Waves of submits, each arriving while the previous one is in flight: none waits for
    company and none is left behind."""

    async def wave(n: int) -> list[Job]:
        return list(await asyncio.gather(*(store.submit(NewJob(**_job(n, i))) for i in range(n))))

    sizes = [1, 7, 1, 13, 2]
    results = await asyncio.gather(*(wave(n) for n in sizes))
    assert [len(r) for r in results] == sizes
    _, total = await store.list_jobs()
    assert total == sum(sizes)


def _job(n: int, i: int) -> dict[str, Any]:
    return {"job_type": JobType.TRAINING, "queue": "q", "payload": {"wave": n, "i": i}}
