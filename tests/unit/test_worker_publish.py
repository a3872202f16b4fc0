"""Publishing a trained model: its files hashed without stopping the worker (its leases must
keep being renewed meanwhile), made durable under their final names, then recorded.

Real worker, real SQLite store, real files; the training child is a fake at the process
boundary that leaves the model files a runtime would."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from aijobs import artifacts
from aijobs.jobs import JobType, NewJob, State
from aijobs.settings import Settings
from aijobs.store.sqlite import SQLiteStore
from aijobs.worker.loop import Worker
from aijobs.worker.supervisor import TrainingProcess
from tests.unit.worker_fakes import (
    FakeClock,
    FakeInferenceChild,
    setup,
    submit_training,
    until,
)

BIG_MODEL = 256 * 1024 * 1024  # sparse: no disk used, but every byte is read and hashed


def open_in_this_process(path: Path) -> bool:
    """Whether this process has `path` open now (its file descriptors, from /proc)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                return True
        except OSError:
            pass  # closed meanwhile
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_hashing_a_big_model_leaves_the_event_loop_free(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], lease_seconds=60) as s:
        job_id = await submit_training(s.store, "sklearn")
        await s.worker.tick()
        await until(lambda: bool(s.children))
        child = s.children[0]
        assert child.spec is not None
        weights = Path(child.spec.model_dir) / "model.bin"
        os.truncate(weights, BIG_MODEL)
        # A task on the worker's event loop looks for the weights being read. While the loop
        # is blocked by the hash, nothing on it runs, so it can never see them open.
        seen_open = False

        async def probe() -> None:
            nonlocal seen_open
            while not seen_open:
                seen_open = open_in_this_process(weights)
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(probe())
        child.end()
        await until(lambda: not s.worker.running, timeout=120)
        watcher.cancel()
        assert seen_open, "the model was hashed on the event loop: nothing else could run"
        job = await s.store.get(job_id)
        assert job.state is State.COMPLETED, job.error


def names_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


async def test_a_published_model_is_complete_under_its_final_name(tmp_path: Path) -> None:
    async with setup(tmp_path, ["sklearn"], lease_seconds=60) as s:
        job_id = await submit_training(s.store, "sklearn")
        await s.worker.tick()
        await until(lambda: bool(s.children))
        s.children[0].end()
        await until(lambda: not s.worker.running)
        job = await s.store.get(job_id)
        assert job.state is State.COMPLETED, job.error
        assert job.result is not None
        model = await s.store.get_model(job.result["model_id"])
        model_dir = Path(model.path)
        assert model_dir.name == "attempt-1"
        assert (model_dir / "model.bin").read_bytes() == b"weights"  # what the runtime wrote
        assert model.sha256 is not None
        assert artifacts.read_metadata(model_dir)["sha256"] == model.sha256
        artifacts.verify(model_dir, model.sha256)
        # Nothing but the model under the model store: no staging directory, no temporary file.
        assert names_under(s.worker.settings.models_dir) == [
            model.model_id,
            f"{model.model_id}/attempt-1",
            f"{model.model_id}/attempt-1/metadata.json",
            f"{model.model_id}/attempt-1/model.bin",
        ]


async def test_a_child_killed_while_it_writes_its_weights_leaves_no_model(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("a\n1\n")
    store = SQLiteStore(str(tmp_path / "aijobs.db"))
    await store.open()
    settings = Settings(home=tmp_path, data_roots=str(data), lease_seconds=60)
    worker = Worker(
        settings,
        store,
        ["sklearn"],
        runtime="tests.echo_runtime:EchoRuntime",
        clock=FakeClock(),
        inference_child=FakeInferenceChild(),
    )
    try:
        hyperparameters = {"weights_mib": 10_000, "write_pause": 0.02}
        job = NewJob(
            job_type=JobType.TRAINING,
            queue="sklearn",
            payload={
                "model_type": "echo",
                "data_path": "/data/x.csv",
                "hyperparameters": hyperparameters,
            },
            model_type="echo",
        )
        job_id = (await store.submit(job)).id
        await worker.tick()
        held = worker.running[job_id]

        def writing() -> bool:
            return any(
                p.stat().st_size >= 4 << 20 for p in settings.models_dir.rglob("weights.bin")
            )

        await until(writing, timeout=60)
        assert isinstance(held.child, TrainingProcess)
        assert held.child.proc is not None
        os.kill(held.child.proc.pid, signal.SIGKILL)  # midway through the save
        await until(lambda: not worker.running, timeout=60)
        after = await store.get(job_id)
        assert after.state is State.PENDING  # killed by a signal: tried again
        assert "SIGKILL" in (after.error or "")
        assert await store.list_models() == ([], 0)
        assert list(settings.models_dir.rglob("weights.bin")) == []
    finally:
        for held in list(worker.running.values()):
            if held.task is not None:
                held.task.cancel()
        await store.close()
