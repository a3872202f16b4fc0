"""The JobStore contract for the metrics (job_stats) and a pending job's place (queue_position):
counted by the store in the steps that change the jobs, the same for every client of it."""

from __future__ import annotations

import asyncio
import time

import pytest

from aijobs import errors
from aijobs.jobs import JobType, Progress, State
from aijobs.store.base import JobStore, RetryBackoff
from aijobs.store.stats import BUCKET_BOUNDS_MS, FailureReason, Histogram, bucket_of
from tests.contract.support import EXPIRE, LONG, SHORT, Factory, claim_one, new, opened

TRAINING, INFERENCE = JobType.TRAINING.value, JobType.INFERENCE.value


async def run_known_sequence(store: JobStore) -> None:
    """One queue, one job in it at a time, each ending (or not) its own way."""
    # completed
    done = await store.submit(new())
    assert await store.finish(done.id, (await claim_one(store)).token, {})
    # timed out and retried, then crashed on its last attempt: failed
    twice = await store.submit(new(max_attempts=2))
    c = await claim_one(store)
    assert await store.fail(twice.id, c.token, "slow", retry=True, reason=FailureReason.TIMEOUT)
    c = await claim_one(store)
    assert await store.fail(twice.id, c.token, "died", retry=True, reason=FailureReason.CRASHED)
    assert (await store.get(twice.id)).state is State.FAILED
    # raised: failed (the default reason)
    raised = await store.submit(new())
    assert await store.fail(raised.id, (await claim_one(store)).token, "bad data")
    # cancelled while running, and while pending (no attempt: no failure, no run time)
    held = await store.submit(new())
    await claim_one(store)
    await store.cancel(held.id)
    await store.cancel((await store.submit(new())).id)
    # lost twice: rescued, then failed once its attempts are spent
    lost = await store.submit(new(max_attempts=2))
    for expected in (State.PENDING, State.FAILED):
        await claim_one(store, lease=SHORT)
        await asyncio.sleep(EXPIRE)
        assert await store.rescue_expired() == [(lost.id, expected)]
    # an inference job: claimed, started by the finish (no renewal said so)
    inferred = await store.submit(new(job_type=JobType.INFERENCE, model_id="m"))
    assert await store.finish(inferred.id, (await claim_one(store)).token, {})
    # handed back for the worker's sake: no failure, still pending
    back = await store.submit(new())
    c = await claim_one(store)
    assert await store.fail(back.id, c.token, "draining", retry=True, count_attempt=False)


def check(hist: Histogram, count: int, elapsed_ms: int) -> None:
    assert hist.count == count
    assert 0 <= hist.sum_ms <= count * elapsed_ms
    assert hist.cumulative()[-1] == ("+Inf", float(count))
    assert [bound for bound, _ in hist.cumulative()[:-1]] == [
        f"{b / 1000:g}" for b in BUCKET_BOUNDS_MS
    ]


async def test_counters_and_histograms_after_a_known_sequence(
    store: JobStore, store_factory: Factory
) -> None:
    assert (await store.job_stats()).submitted == {}
    t0 = time.monotonic()
    await run_known_sequence(store)
    elapsed_ms = int((time.monotonic() - t0) * 1000) + 1
    stats = await store.job_stats()
    assert stats.submitted == {(TRAINING, "q"): 7, (INFERENCE, "q"): 1}
    assert stats.finished == {
        (TRAINING, "q", "completed"): 1,
        (INFERENCE, "q", "completed"): 1,
        (TRAINING, "q", "failed"): 3,
        (TRAINING, "q", "cancelled"): 2,
    }
    assert stats.failures == {
        ("q", "timeout"): 1,
        ("q", "crashed"): 1,
        ("q", "error"): 1,
        ("q", "cancelled"): 1,
        ("q", "lost"): 2,
    }
    # Waits: every job's first start (not the one cancelled while pending, not a retry's).
    assert set(stats.wait) == {"q"}
    check(stats.wait["q"], 7, elapsed_ms)
    # Runs: every job that ended having started.
    assert set(stats.run) == {(TRAINING, "q"), (INFERENCE, "q")}
    check(stats.run[TRAINING, "q"], 5, elapsed_ms)
    check(stats.run[INFERENCE, "q"], 1, elapsed_ms)
    # Another client of the store reads the same figures.
    other = await opened(store_factory)
    try:
        assert await other.job_stats() == stats
    finally:
        await other.close()


async def test_an_observation_lands_in_its_bucket(store: JobStore) -> None:
    job = await store.submit(new(queue="slow"))
    await asyncio.sleep(0.3)  # a wait past the first buckets' bounds
    c = await claim_one(store, "slow")
    assert await store.finish(job.id, c.token, {})
    stats = await store.job_stats()
    wait = stats.wait["slow"]
    assert wait.sum_ms >= 300
    expected = [0] * (len(BUCKET_BOUNDS_MS) + 1)
    expected[bucket_of(wait.sum_ms)] = 1
    assert wait.counts == expected
    run = stats.run[TRAINING, "slow"]
    assert run.counts[bucket_of(run.sum_ms)] == 1 == run.count


async def test_a_start_reported_by_renewal_observes_the_wait(store: JobStore) -> None:
    job = await store.submit(new(job_type=JobType.INFERENCE, model_id="m"))
    c = await claim_one(store)
    assert (await store.job_stats()).wait == {}  # claimed, queued in its worker: not started
    await store.renew("w1", {job.id: (c.token, Progress(started=True))}, LONG)
    assert (await store.job_stats()).wait["q"].count == 1
    assert await store.finish(job.id, c.token, {})
    assert (await store.job_stats()).wait["q"].count == 1


# -- queue_position ------------------------------------------------------------------------------
async def test_jobs_ahead_by_priority_then_age(store: JobStore) -> None:
    low_old = await store.submit(new())
    high_old = await store.submit(new(priority=5))
    low_new = await store.submit(new(job_type=JobType.INFERENCE, model_id="m"))
    high_new = await store.submit(new(priority=5))
    await store.submit(new(queue="elsewhere", priority=9))
    ahead = {}
    for job in (low_old, high_old, low_new, high_new):
        position = await store.queue_position(job.id)
        assert position is not None
        assert (position.backing_off_ahead, position.retry_in, position.claimed_by) == (
            0,
            None,
            None,
        )
        ahead[job.id] = position.jobs_ahead
    assert ahead == {high_old.id: 0, high_new.id: 1, low_old.id: 2, low_new.id: 3}
    # the claim takes them in that order: the first is running, the others move up
    assert (await claim_one(store)).job.id == high_old.id
    assert await store.queue_position(high_old.id) is None
    position = await store.queue_position(low_new.id)
    assert position is not None
    assert position.jobs_ahead == 2


async def test_position_of_claimed_ended_and_missing_jobs(store: JobStore) -> None:
    job = await store.submit(new(job_type=JobType.INFERENCE, model_id="m"))
    c = await claim_one(store, w="w7")
    position = await store.queue_position(job.id)  # shows pending: queued in its worker
    assert position is not None
    assert position.claimed_by == "w7"
    assert await store.finish(job.id, c.token, {})
    assert await store.queue_position(job.id) is None
    with pytest.raises(errors.JobNotFound):
        await store.queue_position("job_missing")


async def test_retried_jobs_waiting_out_their_back_off(store_factory: Factory) -> None:
    store = await opened(store_factory, retry_backoff=RetryBackoff(60, 600))
    try:
        retried = await store.submit(new())
        behind = await store.submit(new())
        c = await claim_one(store)
        assert await store.fail(retried.id, c.token, "died", retry=True)
        own = await store.queue_position(retried.id)
        assert own is not None
        assert own.retry_in is not None
        assert 0 < own.retry_in <= 60
        assert own.jobs_ahead == 0
        other = await store.queue_position(behind.id)
        assert other is not None
        assert (other.jobs_ahead, other.backing_off_ahead, other.retry_in) == (0, 1, None)
    finally:
        await store.close()


# -- oldest_waiting ------------------------------------------------------------------------------
async def test_oldest_waiting_is_the_oldest_of_every_priority_and_type(store: JobStore) -> None:
    assert await store.oldest_waiting(["q", "other"]) == {}
    oldest = await store.submit(new(priority=-3))
    await asyncio.sleep(0.01)  # distinct submit times, in ms
    second = await store.submit(new(job_type=JobType.INFERENCE, model_id="m", priority=-(2**40)))
    for priority in (*range(40, 0, -1), 2**40, 7):  # many bands, newer jobs at higher priority
        await store.submit(new(priority=priority))
    elsewhere = await store.submit(new(queue="other", priority=2))
    found = await store.oldest_waiting(["q", "other", "idle", "q"])
    assert found == {"q": oldest.created_at, "other": elsewhere.created_at}
    await store.cancel(oldest.id)
    assert (await store.oldest_waiting(["q"]))["q"] == second.created_at


async def test_oldest_waiting_leaves_out_claimed_and_backing_off_jobs(
    store_factory: Factory,
) -> None:
    store = await opened(store_factory, retry_backoff=RetryBackoff(60, 600))
    try:
        retried = await store.submit(new(priority=9))
        await asyncio.sleep(0.01)
        held = await store.submit(new(priority=1))
        await asyncio.sleep(0.01)
        waiting = await store.submit(new())
        c = await claim_one(store)
        assert c.job.id == retried.id
        assert await store.fail(retried.id, c.token, "died", retry=True)  # backs off 60 s
        assert (await claim_one(store, w="w2")).job.id == held.id  # held, not started
        assert await store.oldest_waiting(["q"]) == {"q": waiting.created_at}
        assert (await claim_one(store, w="w3")).job.id == waiting.id
        assert await store.oldest_waiting(["q"]) == {}
    finally:
        await store.close()
