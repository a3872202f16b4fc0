"""Which claims a worker's step starts, given its free training and inference slots.

Real worker, real SQLite store; the children are fakes at the process boundary."""

from __future__ import annotations

from pathlib import Path

from aijobs.jobs import State
from tests.unit.worker_fakes import setup, stored_model, submit_inference, submit_training, until


async def test_training_claims_stop_at_the_free_training_slots(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], concurrency=2) as s:
        jobs = [await submit_training(s.store, "sklearn") for _ in range(3)]
        assert not await s.worker.tick()  # fewer than the room: nothing more to claim now
        await until(lambda: len(s.children) == 2)
        assert sorted(s.worker.running) == sorted(jobs[:2])
        assert (await s.store.get(jobs[2])).state is State.PENDING
        assert s.worker.watching.is_set()  # inference slots are free: watch for work

        s.children[0].end()
        await until(lambda: len(s.worker.running) == 1)
        assert (await s.store.get(jobs[0])).state is State.COMPLETED
        s.worker.store_woke = True  # the watcher heard of work
        await s.worker.tick()
        await until(lambda: len(s.children) == 3)
        assert jobs[2] in s.worker.running
        for child in s.children[1:]:
            child.end()
        await until(lambda: not s.worker.running)


async def test_inference_fills_the_room_the_training_slots_leave(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], concurrency=1, inference_prefetch=3) as s:
        model = await stored_model(s.store)
        s.inference.answering.clear()  # the child holds its answers: the jobs stay running
        training = await submit_training(s.store, "sklearn")
        inference = await submit_inference(s.store, model, 5)
        assert await s.worker.tick()  # room 4, all taken: claim again at once
        assert set(s.worker.running) == {training, *inference[:3]}
        assert not await s.worker.tick()  # no room left: no claim, no watching
        assert len(s.worker.running) == 4
        assert not s.worker.watching.is_set()

        s.inference.answering.set()
        await until(lambda: len(s.worker.running) == 1)
        for job_id in inference[:3]:
            job = await s.store.get(job_id)
            assert job.state is State.COMPLETED
            assert job.result is not None
            assert job.result["model_id"] == model
            assert job.result["inference_time_ms"] == 1.0
        assert [r.input_data for r in s.inference.requests] == [[0], [1], [2]]

        # The slots freed: the step watches the queues, and the watcher's answer claims.
        assert not await s.worker.tick()
        assert s.worker.watching.is_set()
        s.worker.store_woke = True
        await s.worker.tick()
        await until(lambda: len(s.worker.running) == 1)
        assert [(await s.store.get(j)).state for j in inference] == [State.COMPLETED] * 5
        s.children[0].end()
        await until(lambda: not s.worker.running)


async def test_jobs_arriving_while_an_inference_batch_runs_are_its_next_batch(
    tmp_path: Path,
) -> None:
    async with setup(tmp_path, ["sklearn"], concurrency=1, inference_prefetch=8) as s:
        model = await stored_model(s.store)
        s.inference.answering.clear()  # the child holds its answers: the batch stays running
        first = await submit_inference(s.store, model, 2)
        assert not await s.worker.tick()  # room 9, two taken
        assert set(s.worker.running) == set(first)
        later = await submit_inference(s.store, model, 3)
        # A batch is with the child: no claim, no watching, even told of work.
        s.worker.store_woke = True
        assert not await s.worker.tick()
        assert not s.worker.watching.is_set()
        assert set(s.worker.running) == set(first)
        assert [(await s.store.get(j)).state for j in later] == [State.PENDING] * 3

        s.inference.answering.set()
        await until(lambda: not s.worker.running)
        # The batch ended: the step watches again, and the next claim takes all three at once.
        assert not await s.worker.tick()
        assert s.worker.watching.is_set()
        s.worker.store_woke = True
        await s.worker.tick()
        await until(lambda: not s.worker.running)
        assert s.inference.batches == [2, 3]
        assert [(await s.store.get(j)).state for j in later] == [State.COMPLETED] * 3


async def test_with_most_slots_held_a_freed_slot_waits_for_the_stores_hint(
    tmp_path: Path,
) -> None:
    async with setup(tmp_path, ["sklearn"], concurrency=4, inference_prefetch=0) as s:
        jobs = [await submit_training(s.store, "sklearn") for _ in range(5)]
        assert await s.worker.tick()  # four slots, four claims
        assert not await s.worker.tick()  # full, and the fifth waits
        await until(lambda: len(s.children) == 4)
        s.children[0].end()
        await until(lambda: len(s.worker.running) == 3)
        # One slot of four free: not worth a claim of its own (claims come in batches) ...
        assert not await s.worker.tick()
        assert (await s.store.get(jobs[4])).state is State.PENDING
        # ... unless the store says there is work.
        s.worker.store_woke = True
        await s.worker.tick()
        assert jobs[4] in s.worker.running
        await until(lambda: len(s.children) == 5)
        for child in s.children[1:]:
            child.end()
        await until(lambda: not s.worker.running)


async def test_a_model_that_is_not_there_fails_its_jobs(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"]) as s:
        (job_id,) = await submit_inference(s.store, "model_missing", 1)
        await s.worker.tick()
        await until(lambda: not s.worker.running)
        job = await s.store.get(job_id)
        assert job.state is State.FAILED
        assert "model_missing is not available" in (job.error or "")
