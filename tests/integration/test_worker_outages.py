"""A finished training job whose commit meets a Redis restart: a real redis-server is killed at
the moment the worker lands the job's last progress report and its result, and started again
after the worker's first back-off. The work must land, not be recorded as failed.

The worker is real and so is the store; time and the training child are the unit tests' fakes
(tests/unit/worker_fakes.py)."""

from __future__ import annotations

import signal
from pathlib import Path

from aijobs.jobs import JobType, NewJob, State
from aijobs.settings import Settings
from aijobs.store.redis import RedisStore
from aijobs.worker.loop import Worker
from aijobs.worker.protocol import ProgressReport
from tests.redis_server import RedisServer, prefix_for
from tests.unit.worker_fakes import FakeClock, FakeInferenceChild, TrainingChildren, until


async def test_a_finished_training_lands_through_a_redis_restart(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    store = RedisStore(own_redis.url, prefix=prefix_for(tmp_path))
    await store.open()
    clock, children = FakeClock(), TrainingChildren()
    worker = Worker(
        Settings(home=tmp_path, lease_seconds=60),
        store,
        ["sklearn"],
        clock=clock,
        spawn_training=children,
        inference_child=FakeInferenceChild(),
    )
    try:
        job = NewJob(
            job_type=JobType.TRAINING,
            queue="sklearn",
            payload={"model_type": "random_forest", "data_path": "/data/x.csv"},
            model_type="random_forest",
        )
        job_id = (await store.submit(job)).id
        await worker.tick()
        await until(lambda: bool(children))
        children[0].on_progress(ProgressReport(0.9, {"loss": 0.1}))  # the last epoch's report
        own_redis.stop(signal.SIGKILL)

        async def back() -> None:
            if own_redis.proc is None:
                own_redis.start()

        clock.on_sleep = back
        children[0].end()
        await until(lambda: not worker.running, timeout=60)
        assert clock.slept  # the commit met the outage and waited it out
        done = await store.get(job_id)
        assert done.state is State.COMPLETED, done.error
        assert done.attempt == 1
    finally:
        for held in list(worker.running.values()):
            if held.task is not None:
                held.task.cancel()
        await store.close()
