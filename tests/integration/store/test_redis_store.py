"""What the Redis store adds to the shared contract: its indexes stay consistent, retention,
start-up checks of the server, 503 while Redis is down and recovery, blocking wake-ups and
hand-overs to waiting workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aijobs import errors
from aijobs.jobs import JobType, NewJob, Progress, Renewal, State, Waiter
from aijobs.settings import Settings
from aijobs.store import open_store
from aijobs.store.redis import RedisMisconfigured, RedisStore, priority_key
from aijobs.store.redis.check import check_invariants
from tests.redis_server import RedisServer, prefix_for

LONG = 60.0
SHORT = 0.05


def new(queue: str = "q", **kw: Any) -> NewJob:
    return NewJob(job_type=JobType.TRAINING, queue=queue, payload={"n": 1}, **kw)


@pytest.fixture
async def rstore(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_server.url, prefix=prefix_for(tmp_path))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_indexes_stay_consistent_through_every_transition(rstore: RedisStore) -> None:
    s = rstore
    ids = [
        (
            await s.submit(
                new(q, priority=i % 3, principal=f"user{i % 2}"), idempotency_key=f"k{i}"
            )
        ).id
        for i, q in enumerate(["a", "b", "a", "b", "a", "b", "a"])
    ]
    assert await check_invariants(s) == []
    claims = await s.claim(["a", "b"], "w1", LONG, limit=3)
    short = await s.claim(["a"], "w2", SHORT)
    assert await check_invariants(s) == []
    await s.renew("w1", {claims[0].job.id: (claims[0].token, Progress(fraction=0.5))}, LONG)
    assert await s.finish(claims[0].job.id, claims[0].token, {"ok": 1})
    assert await s.fail(claims[1].job.id, claims[1].token, "flaky", retry=True)
    assert await s.fail(claims[2].job.id, claims[2].token, "bad")
    await s.cancel(ids[-1])  # pending (or running, whichever it is by now)
    pending = [j for j in ids if (await s.get(j)).state is State.PENDING]
    await s.cancel(pending[0])
    await asyncio.sleep(0.15)
    assert [j for j, _ in await s.rescue_expired()] == [short[0].job.id]
    assert await check_invariants(s) == []
    _, total = await s.list_jobs()
    _, n_pending = await s.list_jobs(state=State.PENDING)
    _, n_running = await s.list_jobs(state=State.RUNNING)
    depths = await s.queue_depths()
    assert total == 7
    assert sum(d["pending"] for d in depths.values()) == n_pending
    assert sum(d["running"] for d in depths.values()) == n_running


async def test_invariant_checker_catches_an_orphan(rstore: RedisStore) -> None:
    """The oracle can fail: a job dropped from its claim index is reported."""
    job = await rstore.submit(new())
    rank = await rstore.client().hget(rstore.k("job", job.id), "rank")
    assert rank is not None
    await rstore.client().zrem(rstore.k("ready", "q"), rank)
    problems = await check_invariants(rstore)
    assert problems
    assert job.id in problems[0]
    assert "ready" in problems[0]


async def test_invariant_checker_catches_a_job_missing_from_its_owners_index(
    rstore: RedisStore,
) -> None:
    job = await rstore.submit(new(principal="alice"))
    assert await check_invariants(rstore) == []
    await rstore.client().zrem(rstore.k("owned", "pending", "alice"), job.id)
    assert await check_invariants(rstore) == [
        f"owned index 'pending:alice' holds [], not ['{job.id}']"
    ]


async def test_every_key_carries_the_deployment_hash_tag(rstore: RedisStore) -> None:
    job = await rstore.submit(new(), idempotency_key="idem")
    claim = (await rstore.claim(["q"], "w", LONG))[0]
    assert await rstore.finish(job.id, claim.token, {}, log="x")
    keys = [k async for k in rstore.client().scan_iter(match=f"*{rstore.prefix}*")]
    assert keys, keys
    assert all(k.startswith("{" + rstore.prefix + "}:") for k in keys), keys


async def test_retention_by_count_trims_oldest_finished_jobs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    s = RedisStore(redis_server.url, prefix=prefix_for(tmp_path), retain_jobs=3)
    await s.open()
    try:
        waiting = await s.submit(new("other"))
        done = []
        for i in range(8):
            job = await s.submit(new(principal="user"), idempotency_key=f"key{i}")
            claim = (await s.claim(["q"], "w", LONG))[0]
            assert await s.finish(job.id, claim.token, {"i": i})
            done.append(job.id)
        kept, total = await s.list_jobs(state=State.COMPLETED)
        assert [j.id for j in kept] == done[::-1][:3]
        assert total == 3
        assert (await s.list_jobs())[1] == 4  # 3 finished + the pending one, never trimmed
        assert (await s.get(waiting.id)).state is State.PENDING
        assert (await s.list_jobs(principal="user"))[1] == 3  # trimmed from its owner's too
        with pytest.raises(errors.JobNotFound):
            await s.get(done[0])
        # a trimmed job's idempotency key is forgotten with it
        assert (await s.submit(new(), idempotency_key="key0")).id != done[0]
        assert (await s.submit(new(), idempotency_key="key7")).id == done[7]
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_retention_by_age(redis_server: RedisServer, tmp_path: Path) -> None:
    s = RedisStore(redis_server.url, prefix=prefix_for(tmp_path), retain_seconds=0.3)
    await s.open()
    try:
        old = await s.submit(new())
        await s.cancel(old.id)
        await asyncio.sleep(0.5)
        fresh = await s.submit(new())
        await s.cancel(fresh.id)  # the next terminal transition trims what has aged out
        assert [j.id for j in (await s.list_jobs())[0]] == [fresh.id]
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_priorities_beyond_the_exact_range_are_clamped_not_wrapped(
    rstore: RedisStore,
) -> None:
    assert priority_key(2**31 - 1) == "0000000000"
    assert priority_key(10**12) == "0000000000"
    assert priority_key(-(10**12)) == f"{2**32 - 2:010d}"
    low = await rstore.submit(new(priority=-(10**12)))
    high = await rstore.submit(new(priority=10**12))
    mid = await rstore.submit(new(priority=0))
    claims = await rstore.claim(["q"], "w", LONG, limit=3)
    assert [c.job.id for c in claims] == [high.id, mid.id, low.id]
    assert claims[0].job.priority == 10**12  # stored exactly


async def test_wait_for_work_wakes_on_submit_and_times_out(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    waiter = RedisStore(redis_server.url, prefix=prefix_for(tmp_path))
    submitter = RedisStore(redis_server.url, prefix=prefix_for(tmp_path))
    await waiter.open()
    await submitter.open()
    try:
        t0 = time.monotonic()
        await waiter.wait_for_work(["q"], 0.3)  # nothing there: waits out its timeout
        assert 0.25 <= time.monotonic() - t0 < 2
        task = asyncio.create_task(waiter.wait_for_work(["q", "other"], 10))
        await asyncio.sleep(0.2)
        assert not task.done()
        t0 = time.monotonic()
        await submitter.submit(new("other"))
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - t0 < 2  # woken by the submission, not by the timeout
        # a claim that leaves work behind passes the wake-up on; one that empties the queue
        # clears it
        await submitter.submit(new("other"))
        await submitter.claim(["other"], "w", LONG)
        await asyncio.wait_for(waiter.wait_for_work(["other"], 10), 5)
        await submitter.claim(["other"], "w", LONG)
        t0 = time.monotonic()
        await waiter.wait_for_work(["other"], 0.3)
        assert time.monotonic() - t0 >= 0.25
        # cancelling a waiter (a worker whose slot freed up) leaves the store usable
        task = asyncio.create_task(waiter.wait_for_work(["q"], 10))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await waiter.list_jobs())[1] == 2
    finally:
        await waiter.close()
        await submitter.close()


def infer(queue: str = "q") -> NewJob:
    payload = {"model_id": "m", "input_data": "x"}
    return NewJob(job_type=JobType.INFERENCE, queue=queue, payload=payload, model_id="m")


async def waiting(store: RedisStore, worker: str, queues: list[str], max_training: int = 1) -> None:
    """Register `worker` as waiting on `queues` without taking anything from its inbox (a worker
    stopped between its registration and its pop)."""
    assert (
        await store.run_script(
            "wait", worker, f"earlier {max_training} 60000", 10_000, 1, "seed", *queues
        )
        == 1
    )


async def test_a_job_submitted_to_a_waiting_worker_is_claimed_for_it(rstore: RedisStore) -> None:
    s = rstore
    waiter = Waiter("w1", LONG, max_training=1)
    task = asyncio.create_task(s.wait_for_work(["other", "q"], 10, waiter))
    await asyncio.sleep(0.2)
    submitted = await s.submit(infer())
    assert submitted.state is State.PENDING  # the submitter's answer: the job as submitted
    (claim,) = await asyncio.wait_for(task, 5)
    assert claim.job.id == submitted.id
    assert claim.job.attempt == 1
    stored = await s.get(submitted.id)
    assert (stored.state, stored.owner) == (State.PENDING, "w1")  # leased; not started yet
    assert await check_invariants(s) == []
    # an ordinary claim in every respect: renewed and finished with its token, fenced without
    assert await s.renew("w1", {claim.job.id: (claim.token, None)}, LONG) == {
        claim.job.id: Renewal.OK
    }
    assert not await s.finish(claim.job.id, claim.token + "x", {"stale": True})
    assert await s.finish(claim.job.id, claim.token, {"ok": True})
    assert (await s.get(submitted.id)).state is State.COMPLETED
    assert await check_invariants(s) == []


async def test_no_hand_over_past_queued_work_or_to_a_worker_without_room(
    rstore: RedisStore,
) -> None:
    s = rstore
    queued = await s.submit(infer())
    t0 = time.monotonic()
    # work is ready: the wait claims it for the waiter (FIFO), at once
    (first,) = await s.wait_for_work(["q"], 10, Waiter("w1", LONG, 1))
    assert time.monotonic() - t0 < 2
    assert (first.job.id, first.job.owner) == (queued.id, "w1")
    # a worker whose training slots are full waits for inference only: a training job is
    # neither handed to it nor hinted (it waits its time out), and stays queued
    full = Waiter("w1", LONG, max_training=0)
    task = asyncio.create_task(s.wait_for_work(["q"], 0.5, full))
    await asyncio.sleep(0.2)
    training = await s.submit(new())
    t0 = time.monotonic()
    assert await asyncio.wait_for(task, 5) == []
    assert time.monotonic() - t0 > 0.1
    assert (await s.get(training.id)).state is State.PENDING
    # ... nor does that queued training job wake it at once (its claim would take nothing);
    # a worker with a free training slot claims it at once
    t0 = time.monotonic()
    assert await s.wait_for_work(["q"], 0.3, full) == []
    assert time.monotonic() - t0 >= 0.2
    (claim,) = await s.wait_for_work(["q"], 10, Waiter("w2", LONG, 1))
    assert time.monotonic() - t0 < 2
    assert claim.job.id == training.id
    # an inference job on another of its queues is handed to it all the same
    task = asyncio.create_task(s.wait_for_work(["q", "r"], 10, full))
    await asyncio.sleep(0.2)
    handed = await s.submit(infer("r"))
    assert [c.job.id for c in await asyncio.wait_for(task, 5)] == [handed.id]
    assert await check_invariants(s) == []


async def test_a_worker_without_room_for_training_claims_the_inference_behind_it_at_once(
    rstore: RedisStore,
) -> None:
    s = rstore
    training = await s.submit(new())
    behind = await s.submit(infer())
    full = Waiter("w1", LONG, max_training=0)
    t0 = time.monotonic()
    (claim,) = await s.wait_for_work(["q"], 10, full)  # work it can take is ready
    assert time.monotonic() - t0 < 2
    assert claim.job.id == behind.id
    assert (await s.get(training.id)).state is State.PENDING
    assert await check_invariants(s) == []


async def test_a_wait_claims_the_ready_work_up_to_its_room_and_hints_a_waiter_without_one(
    rstore: RedisStore,
) -> None:
    s = rstore
    jobs = [await s.submit(infer()) for _ in range(3)]
    assert await s.wait_for_work(["q"], 10) == []  # no Waiter: told to claim, handed nothing
    assert [(await s.get(j.id)).state for j in jobs] == [State.PENDING] * 3
    claims = await s.wait_for_work(["q"], 10, Waiter("w1", LONG, 1, room=2))
    assert [c.job.id for c in claims] == [j.id for j in jobs[:2]]
    assert {c.job.owner for c in claims} == {"w1"}
    for claim in claims:
        assert await s.finish(claim.job.id, claim.token, {"ok": True})
    (last,) = await s.claim(["q"], "w2", LONG, limit=5)  # the third stayed queued
    assert last.job.id == jobs[2].id
    assert await check_invariants(s) == []


async def test_nothing_is_handed_to_a_worker_that_stopped_waiting(rstore: RedisStore) -> None:
    s = rstore
    assert await s.wait_for_work(["q"], 0.3, Waiter("w1", LONG, 1)) == []  # timed out
    job = await s.submit(infer())
    assert (await s.get(job.id)).state is State.PENDING
    # and a waiter without a Waiter (hints only) is never handed a job either
    task = asyncio.create_task(s.wait_for_work(["q", "r"], 10))
    await asyncio.sleep(0.2)
    job = await s.submit(infer("r"))
    assert await asyncio.wait_for(task, 5) == []
    assert (await s.get(job.id)).state is State.PENDING


async def test_a_stopping_worker_hands_back_what_it_never_took(rstore: RedisStore) -> None:
    s = rstore
    await waiting(s, "w1", ["q"])
    job = await s.submit(infer())
    assert (await s.get(job.id)).owner == "w1"  # handed over, still in w1's inbox
    await s.unregister_worker("w1")
    back = await s.get(job.id)
    assert (back.state, back.owner, back.attempt) == (State.PENDING, None, 0)  # never ran
    assert await check_invariants(s) == []
    (claim,) = await s.claim(["q"], "w2", LONG)
    assert claim.job.id == job.id
    assert claim.job.attempt == 1


async def test_a_hand_over_popped_as_the_wait_is_cancelled_is_handed_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A stopping worker cancels its wait just as Redis pops a hand-over from its inbox: the
    reply is on the wire and never read. The job goes back to pending in its place, its attempt
    undone, at once (not after its lease)."""
    worker = RedisStore(redis_server.url, prefix=prefix_for(tmp_path))
    await worker.open()
    try:
        ahead = await worker.submit(new("r"))  # so the hand-over's FIFO place can be seen
        task = asyncio.create_task(worker.wait_for_work(["q"], 10, Waiter("w1", LONG, 1)))
        await asyncio.sleep(0.3)  # w1 is blocked in its pop

        async def submit_elsewhere() -> str:
            api = RedisStore(redis_server.url, prefix=prefix_for(tmp_path))
            await api.open()
            try:
                return (await api.submit(infer())).id
            finally:
                await api.close()

        # Submitted while this event loop is held: Redis hands the job over and pops it for
        # w1, and w1's task is cancelled before it can read the reply.
        pool = concurrent.futures.ThreadPoolExecutor(1)
        job_id = pool.submit(asyncio.run, submit_elsewhere()).result(timeout=10)
        pool.shutdown()
        time.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        back = await worker.get(job_id)
        assert (back.state, back.owner, back.attempt) == (State.PENDING, None, 0)
        assert await check_invariants(worker) == []
        claims = await worker.claim(["r", "q"], "w2", LONG, limit=2)
        assert [c.job.id for c in claims] == [ahead.id, job_id]
        assert claims[1].job.attempt == 1
    finally:
        await worker.close()


async def test_a_hand_over_from_an_earlier_wait_is_taken_only_while_its_lease_holds(
    rstore: RedisStore,
) -> None:
    s = rstore
    # handed over while w1 was not popping (say its connection dropped): the next wait finds it
    await waiting(s, "w1", ["q"])
    kept = await s.submit(infer())
    (claim,) = await s.wait_for_work(["q"], 10, Waiter("w1", LONG, 1))
    assert claim.job.id == kept.id
    # ... unless the job was taken from it meanwhile (cancelled here; rescued alike)
    await waiting(s, "w1", ["q"])
    lost = await s.submit(infer())
    await s.cancel(lost.id)
    assert await s.wait_for_work(["q"], 0.3, Waiter("w1", LONG, 1)) == []
    assert await check_invariants(s) == []


async def test_a_cancelled_wait_raises_promptly_and_waits_no_more(rstore: RedisStore) -> None:
    # redis-py can swallow a cancel while it lends a connection; the store must not
    for i in range(40):
        task = asyncio.create_task(rstore.wait_for_work(["q"], 1.0, Waiter("w1", LONG, 1)))
        await asyncio.sleep((i % 8) * 0.0005 if i < 39 else 0.2)  # the last one surely waits
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 3)
    job = await rstore.submit(infer())  # a stopping worker is handed nothing
    assert (await rstore.get(job.id)).state is State.PENDING


async def test_open_refuses_an_evicting_redis(own_redis: RedisServer) -> None:
    own_redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    s = RedisStore(own_redis.url)
    with pytest.raises(RedisMisconfigured, match="maxmemory-policy allkeys-lru") as info:
        await s.open()
    assert "noeviction" in str(info.value)
    assert info.value.status_code == 503
    assert (await s.health())["healthy"] is False
    own_redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    await s.open()
    await s.close()


async def test_open_warns_when_persistence_is_off(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    own_redis.command("CONFIG", "SET", "appendonly", "no")
    s = RedisStore(own_redis.url)
    with caplog.at_level(logging.WARNING, logger="aijobs.store.redis"):
        await s.open()
    try:
        assert "persistence off" in caplog.text
        assert "appendonly yes" in caplog.text
        health = await s.health()
        assert health["healthy"] is True
        assert health["persistence"]["aof_enabled"] is False
        assert any("persistence is off" in w for w in health["warnings"])
    finally:
        await s.close()


async def test_open_fails_clearly_when_redis_is_unreachable() -> None:
    from tests.integration.harness import free_port

    s = RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)
    with pytest.raises(errors.StoreUnavailable, match="cannot reach Redis at redis://127"):
        await s.open()


async def test_health_reports_the_server(rstore: RedisStore) -> None:
    await rstore.submit(new())
    h = await rstore.health()
    assert h["healthy"] is True
    assert h["store"] == "redis"
    assert h["jobs"] == 1
    assert h["version"].startswith("7.")
    assert h["latency_ms"] >= 0
    assert h["maxmemory_policy"] == "noeviction"
    assert h["persistence"]["aof_enabled"] is True
    assert h["persistence"]["appendfsync"] == "always"
    assert h["memory"]["used_bytes"] > 0
    assert "warnings" not in h


async def test_unavailable_while_down_then_recovers_by_itself(own_redis: RedisServer) -> None:
    s = RedisStore(own_redis.url, prefix="p", connect_timeout=1, socket_timeout=2)
    await s.open()
    try:
        kept = await s.submit(new())
        await asyncio.gather(*(s.list_jobs() for _ in range(6)))  # six pooled connections
        own_redis.stop(signal.SIGKILL)
        for call in (
            lambda: s.submit(new()),
            lambda: s.get(kept.id),
            lambda: s.list_jobs(),
            lambda: s.claim(["q"], "w", LONG),
            lambda: s.wait_for_work(["q"], 1),
            lambda: s.rescue_expired(),
        ):
            t0 = time.monotonic()
            with pytest.raises(errors.StoreUnavailable, match="Redis is unavailable"):
                await call()
            assert time.monotonic() - t0 < 5  # an answer, not a hang
        assert (await s.health())["healthy"] is False
        own_redis.start()  # AOF replays: what was acknowledged is back
        # Every pooled connection died with the server; none may be lent out again, or the
        # calls that are never retried (claim, finish) would fail once Redis is back.
        claims = await asyncio.gather(*(s.claim(["q"], f"w{i}", LONG) for i in range(6)))
        (claim,) = [c for cs in claims for c in cs]
        assert claim.job.id == kept.id
        assert await s.finish(kept.id, claim.token, {"ok": True})
        assert (await s.submit(new())).state is State.PENDING  # its lane connects again
        assert (await s.health())["healthy"] is True
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_submits_go_on_over_a_new_connection_after_a_restart(
    own_redis: RedisServer,
) -> None:
    """A process's submits keep one connection (its lane); a restart of Redis closes it under
    them, idle: the next submit finds it dead and is retried once on a new one, unseen."""
    s = RedisStore(own_redis.url, connect_timeout=1, socket_timeout=2)
    await s.open()
    try:
        before = await s.submit(new())
        own_redis.restart(signal.SIGTERM)  # a clean restart: the AOF keeps what was answered
        after = await s.submit(new())
        assert [j.id for j in (await s.list_jobs())[0]] == [after.id, before.id]
        own_redis.restart(signal.SIGKILL)
        assert (await s.submit(new())).state is State.PENDING
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_a_workers_wait_and_finish_go_on_over_new_connections_after_a_restart(
    own_redis: RedisServer,
) -> None:
    """A worker's wait and its finishes keep a connection each (their lanes); a restart of
    Redis closes them, idle. Neither call is retried blindly: each finds its connection closed
    before it sends, as the pool would, and goes on over a new one."""
    s = RedisStore(own_redis.url, connect_timeout=1, socket_timeout=2)
    await s.open()
    waiter = Waiter("w", LONG, max_training=1)

    async def handed_over() -> None:
        waiting = asyncio.create_task(s.wait_for_work(["q"], 5, waiter))
        await asyncio.sleep(0.3)  # registered, popping its inbox
        job = await s.submit(new())
        (claim,) = await waiting
        assert claim.job.id == job.id
        assert await s.finish(job.id, claim.token, {"ok": True})

    try:
        await handed_over()
        own_redis.restart(signal.SIGTERM)  # a clean restart: the AOF keeps what was answered
        await asyncio.sleep(0.2)  # a worker's event loop runs on meanwhile: it hears the close
        await handed_over()
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_a_full_redis_answers_unavailable_and_still_serves_reads(
    own_redis: RedisServer,
) -> None:
    s = RedisStore(own_redis.url)
    await s.open()
    try:
        kept = await s.submit(new())
        own_redis.command("CONFIG", "SET", "maxmemory", "1")  # full: noeviction refuses writes
        with pytest.raises(errors.StoreUnavailable, match="cannot serve this now"):
            await s.submit(new())
        with pytest.raises(errors.StoreUnavailable):
            await s.claim(["q"], "w", LONG)
        # reads go on (read-only scripts are flagged no-writes), and nothing changed
        assert [j.id for j in (await s.list_jobs())[0]] == [kept.id]
        assert (await s.get(kept.id)).state is State.PENDING
        assert [w.worker_id for w in await s.live_workers(10)] == []
        own_redis.command("CONFIG", "SET", "maxmemory", "0")
        assert (await s.claim(["q"], "w", LONG))[0].job.id == kept.id
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_functions_lost_by_redis_are_loaded_again_at_the_next_call(
    own_redis: RedisServer,
) -> None:
    s = RedisStore(own_redis.url)
    await s.open()
    try:
        kept = await s.submit(new())
        own_redis.command("FUNCTION", "FLUSH")  # as a restart without persistence loses them
        assert [j.id for j in (await s.list_jobs())[0]] == [kept.id]  # a read function
        own_redis.command("FUNCTION", "FLUSH")
        together = await asyncio.gather(*(s.submit(new()) for _ in range(5)))  # a pipeline
        own_redis.command("FUNCTION", "FLUSH")
        claimed = await s.claim(["q"], "w", LONG, limit=10)
        assert {c.job.id for c in claimed} == {kept.id, *(j.id for j in together)}
        assert await check_invariants(s) == []
    finally:
        await s.close()


async def test_open_store_picks_redis_with_settings_from_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIJOBS_REDIS_PREFIX", "from-env")
    monkeypatch.setenv("AIJOBS_REDIS_RETAIN_JOBS", "7")
    store = open_store(redis_server.url)
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.retain_jobs, store.key) == ("from-env", 7, "{from-env}")
    assert open_store(redis_server.url, prefix="explicit").prefix == "explicit"  # type: ignore[attr-defined]
    given = open_store(redis_server.url, settings=Settings(redis_prefix="given", redis_pool_size=9))
    assert (given.prefix, given.pool_size) == ("given", 9)  # type: ignore[attr-defined]
    unix = open_store("unix:///tmp/redis.sock?db=2")
    assert isinstance(unix, RedisStore)
    assert unix.url == "unix:///tmp/redis.sock?db=2"
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("mysql://x")
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(redis_server.url, prefix="a{b}")
