"""Which jobs a worker gives a GPU (CUDA_VISIBLE_DEVICES stands in for the machine's GPUs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aijobs.jobs import Claim, Job, JobType, State
from aijobs.settings import Settings
from aijobs.store.sqlite import SQLiteStore
from aijobs.worker.loop import Running, Worker


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
    assert w.free_gpus == ["0"] and w.concurrency == 1
    assert Worker._device(held("pytorch-2.1-gpu", True)) == "cuda"


def test_tensorflow_gives_its_gpu_to_the_jobs_that_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    w = worker(tmp_path, ["tensorflow"])
    assert w.free_gpus == ["0"] and w.concurrency == 2  # CPU jobs are not capped by GPUs
    assert Worker._device(held("tensorflow", True, gpu="0")) == "cuda"
    assert Worker._device(held("tensorflow", False)) == "cpu"
    assert Worker._device(held("tensorflow", True)) == "cpu"  # no GPU free: it runs on the CPU


def test_cpu_queues_never_look_for_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert worker(tmp_path, ["sklearn", "pytorch-2.0-cpu"]).free_gpus == []
