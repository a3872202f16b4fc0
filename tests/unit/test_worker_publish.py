"""Publishing a trained model: its files hashed without stopping the worker (its leases must
keep being renewed meanwhile), made durable under their final names, then recorded.

Real worker, real SQLite store, real files; the training child is a fake at the process
boundary that leaves the model files a runtime would."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aijobs.jobs import State
from tests.unit.worker_fakes import setup, submit_training, until

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
