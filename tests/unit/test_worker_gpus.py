"""Which jobs a worker gives a GPU (CUDA_VISIBLE_DEVICES stands in for the machine's GPUs).

The worker claims real jobs from a real store and starts them through its own start path; only
the training child is a fake, which records the device and the GPU it was given."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aijobs.jobs import Claim, Job, JobType, State
from aijobs.settings import Settings
from aijobs.store.sqlite import SQLiteStore
from aijobs.worker.loop import Worker
from aijobs.worker.running import Running
from aijobs.worker.training import device_for
from tests.unit.worker_fakes import setup, submit_training, until


def worker(tmp_path: Path, queues: list[str], concurrency: int = 2) -> Worker:
    return Worker(Settings(home=tmp_path), SQLiteStore(":memory:"), queues, concurrency)


def held(queue: str, requires_gpu: bool, gpu: str | None = None) -> Running:
    now = time.time()
    job = Job(
        id="job_1",
        job_type=JobType.TRAINING,
        queue=queue,
        state=State.RUNNING,
        payload={"model_type": "inception", "requires_gpu": requires_gpu},
        created_at=now,
        updated_at=now,
    )
    return Running(Claim(job=job, token="t"), gpu=gpu)


def test_gpu_queues_cap_concurrency_at_one_job_per_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    w = worker(tmp_path, ["pytorch-2.1-gpu"])
    assert w.free_gpus == ["0"]
    assert w.concurrency == 1
    assert device_for(held("pytorch-2.1-gpu", True)) == "cuda"


def test_tensorflow_gives_its_gpu_to_the_jobs_that_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    w = worker(tmp_path, ["tensorflow"])
    assert w.free_gpus == ["0"]
    assert w.concurrency == 2
    assert device_for(held("tensorflow", True, gpu="0")) == "cuda"
    assert device_for(held("tensorflow", False)) == "cpu"
    assert device_for(held("tensorflow", True)) == "cpu"  # no GPU free: it runs on the CPU


def test_cpu_queues_never_look_for_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert worker(tmp_path, ["sklearn", "pytorch-2.0-cpu"]).free_gpus == []


async def test_a_started_job_that_asks_gets_the_gpu_and_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    async with setup(tmp_path, ["tensorflow"], concurrency=2) as s:
        asks = await submit_training(s.store, "tensorflow", requires_gpu=True)
        also_asks = await submit_training(s.store, "tensorflow", requires_gpu=True)
        await s.worker.tick()
        await until(lambda: len(s.children) == 2 and all(c.spec for c in s.children))
        first, second = s.children.of(asks), s.children.of(also_asks)
        assert first.spec is not None
        assert second.spec is not None
        assert (first.gpu, first.spec.device) == ("0", "cuda")
        assert (second.gpu, second.spec.device) == (None, "cpu")  # no GPU left: the CPU
        assert s.worker.free_gpus == []

        first.end()
        await until(lambda: asks not in s.worker.running)
        assert s.worker.free_gpus == ["0"]  # handed back as the job ended
        job = await s.store.get(asks)
        assert job.state is State.COMPLETED
        assert job.result is not None
        assert job.result["device"] == "cuda"

        # The next job that asks gets the GPU the first one gave back.
        third = await submit_training(s.store, "tensorflow", requires_gpu=True)
        s.worker.store_woke = True  # as the watcher says when the store hints at new work
        await s.worker.tick()
        await until(lambda: len(s.children) == 3 and s.children[2].spec is not None)
        assert s.children.of(third).gpu == "0"
        s.children.of(third).end()
        second.end()
        await until(lambda: not s.worker.running)
        assert s.worker.free_gpus == ["0"]


async def test_a_job_that_does_not_ask_leaves_the_gpu_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    async with setup(tmp_path, ["tensorflow"], concurrency=2) as s:
        cpu_job = await submit_training(s.store, "tensorflow", requires_gpu=False)
        await s.worker.tick()
        await until(lambda: len(s.children) == 1 and s.children[0].spec is not None)
        child = s.children.of(cpu_job)
        assert child.spec is not None
        assert (child.gpu, child.spec.device) == (None, "cpu")
        assert s.worker.free_gpus == ["0"]
        child.end()
        await until(lambda: not s.worker.running)


async def test_gpu_queue_jobs_each_get_their_own_gpu_and_a_failed_one_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    async with setup(tmp_path, ["pytorch-2.1-gpu"], concurrency=4) as s:
        assert s.worker.concurrency == 2
        jobs = [await submit_training(s.store, "pytorch-2.1-gpu") for _ in range(3)]
        await s.worker.tick()
        await until(lambda: len(s.children) == 2 and all(c.spec for c in s.children))
        assert sorted(c.gpu or "" for c in s.children) == ["0", "1"]  # one GPU per job
        assert all(c.spec is not None and c.spec.device == "cuda" for c in s.children)
        assert (await s.store.get(jobs[2])).state is State.PENDING  # no training slot free

        crashed = s.children[0]
        assert crashed.spec is not None
        crashed.end(-9)  # killed by a signal: failed back to pending, its GPU given back
        await until(
            lambda: crashed.spec is not None and crashed.spec.job_id not in s.worker.running
        )
        assert s.worker.free_gpus == [crashed.gpu]
        assert (await s.store.get(crashed.spec.job_id)).state is State.PENDING

        s.worker.store_woke = True
        await s.worker.tick()
        await until(lambda: len(s.children) == 3 and s.children[2].spec is not None)
        assert s.children[2].gpu == crashed.gpu
        for child in s.children[1:]:
            child.end()
        await until(lambda: not s.worker.running)
        assert sorted(s.worker.free_gpus) == ["0", "1"]
