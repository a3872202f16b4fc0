"""The SQLite store's group commit (store/sqlite/database.py): concurrent submissions of one
process share one transaction; a lone one does not wait for company. Counted by the statements
the writer connection runs (SQLite's trace callback), over a real file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aijobs.jobs import JobType, NewJob
from aijobs.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "aijobs.db"))
    await s.open()
    yield s
    await s.close()


async def traced(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    writer = store._db._writer  # the statements it runs are what is counted
    assert writer is not None
    await writer.run(lambda conn: conn.set_trace_callback(statements.append))
    return statements


def job(i: int) -> NewJob:
    return NewJob(job_type=JobType.TRAINING, queue="q", payload={"i": i})


async def test_a_burst_of_submits_is_one_transaction(store: SQLiteStore) -> None:
    statements = await traced(store)
    jobs = await asyncio.gather(*(store.submit(job(i)) for i in range(30)))
    assert len({j.id for j in jobs}) == 30
    # The first goes at once, alone; the 29 that queued behind it go together.
    assert statements.count("BEGIN IMMEDIATE") == 2
    assert statements.count("COMMIT") == 2
    assert statements.count("SAVEPOINT submission") == 29


async def test_a_lone_submit_is_committed_at_once_without_savepoints(store: SQLiteStore) -> None:
    statements = await traced(store)
    for i in range(3):
        await store.submit(job(i))
    assert statements.count("COMMIT") == 3
    assert not [s for s in statements if "SAVEPOINT" in s]
