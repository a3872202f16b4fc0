"""What the SQLite store adds to the shared contract: several OS processes share one file."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aijobs.jobs import JobType, NewJob, State
from aijobs.store.sqlite import SQLiteStore

LONG = 60.0


def new(**kw: Any) -> NewJob:
    return NewJob(job_type=JobType.TRAINING, queue="q", **kw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "store" / "aijobs.db"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _process_claimer(path: str, barrier: Any, out: str, name: str) -> None:
    """Runs in a child process: claims from the shared SQLite file and finishes what it got."""

    async def main() -> list[str]:
        s = SQLiteStore(path)
        await s.open()
        try:
            await s.claim(["warm-up"], name, LONG)  # first-call costs before the start line
            barrier.wait(30)
            got: list[str] = []
            while claims := await s.claim(["q"], name, LONG, limit=2):
                for c in claims:
                    got.append(c.job.id)
                    assert await s.finish(c.job.id, c.token, {"by": name})
                await asyncio.sleep(0.002)  # "work", so that the three claimers interleave
            return got
        finally:
            await s.close()

    Path(out).write_text(json.dumps(asyncio.run(main())))


async def test_sqlite_separate_processes_never_double_claim(
    store: SQLiteStore, tmp_path: Path
) -> None:
    path = store.path
    ids = {(await store.submit(new(payload={"i": i}))).id for i in range(400)}
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    outs = [str(tmp_path / f"claims-{i}.json") for i in range(2)]
    procs = [
        ctx.Process(target=_process_claimer, args=(path, barrier, outs[i], f"proc{i}"))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    try:
        await asyncio.to_thread(barrier.wait, 60)
        mine: list[str] = []  # the test process claims at the same time, through its own store
        while claims := await store.claim(["q"], "parent", LONG, limit=2):
            for c in claims:
                mine.append(c.job.id)
                assert await store.finish(c.job.id, c.token, {"by": "parent"})
            await asyncio.sleep(0.002)
        for p in procs:
            await asyncio.to_thread(p.join, 120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    theirs = [json.loads(Path(o).read_text()) for o in outs]
    # not vacuous: at least two OS processes really claimed from the file at the same time
    assert sum(1 for got in [mine, *theirs] if got) >= 2, [len(mine), *map(len, theirs)]
    flat = mine + [i for t in theirs for i in t]
    assert len(flat) == len(set(flat)) == 400
    assert set(flat) == ids
    _, done = await store.list_jobs(state=State.COMPLETED)
    assert done == 400
    for i, got in enumerate(theirs):
        for job_id in got[:5]:
            assert (await store.get(job_id)).result == {"by": f"proc{i}"}
