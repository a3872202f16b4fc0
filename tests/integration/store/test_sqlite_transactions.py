"""The SQLite store's write transactions (store/sqlite/database.py, thread.py), over a real
file. Group commit: concurrent submissions of one process share one transaction, and a lone
one does not wait for company (counted by the statements the writer runs, SQLite's trace
callback). Each transaction is one hand-over to the writer's thread, whatever it runs; errors
come back to the caller; a caller cancelled mid-transaction leaves it whole, never half-done."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aijobs.jobs import Finish, JobType, NewJob
from aijobs.store.sqlite import SQLiteStore
from aijobs.store.sqlite.thread import ConnectionThread


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


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


def hand_overs(thread: ConnectionThread | None, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls handed to `thread` from now on (one element per call)."""
    assert thread is not None
    calls: list[int] = []
    call = thread._call

    async def counted(fn: Callable[[], Any]) -> Any:
        calls.append(1)
        return await call(fn)

    monkeypatch.setattr(thread, "_call", counted)
    return calls


async def test_a_submit_claim_and_finish_are_one_hand_over_each(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = hand_overs(store._db._writer, monkeypatch)
    job = await store.submit(NewJob(job_type=JobType.TRAINING, queue="q", payload={}))
    assert len(writes) == 1  # BEGIN, the checks, the insert and COMMIT: one trip
    (claim,) = await store.claim(["q"], "w1", 30)  # its look for work is the reader's
    assert len(writes) == 2
    assert await store.finish_many([Finish(job.id, claim.token, {"ok": 1})]) == [True]
    assert len(writes) == 3


async def test_an_error_in_a_transaction_rolls_it_back_and_reaches_the_caller(
    store: SQLiteStore,
) -> None:
    def half_then_fail(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
        db.execute("SELECT * FROM no_such_table")

    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await store._db.write(half_then_fail)
    assert await store._db.read("SELECT value FROM meta WHERE key = 'half'") == []
    await store._db.write(lambda db: db.execute("INSERT INTO meta VALUES ('after', '1')"))
    assert await store._db.read("SELECT value FROM meta WHERE key = 'after'") == [("1",)]


async def test_a_caller_cancelled_mid_transaction_leaves_it_whole(store: SQLiteStore) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES ('slow', '1')")
        inside.set()
        release.wait(10)
        db.execute("UPDATE meta SET value = '2' WHERE key = 'slow'")

    caller = asyncio.create_task(store._db.write(slow))
    await asyncio.to_thread(inside.wait, 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    # The write lock is still the transaction's: the next one waits for it to end, whole.
    after = asyncio.create_task(store._db.write(lambda db: db.execute("SELECT 1")))
    release.set()
    await after
    assert await store._db.read("SELECT value FROM meta WHERE key = 'slow'") == [("2",)]


async def test_a_closed_store_stops_its_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    store = SQLiteStore(str(tmp_path / "aijobs.db"))
    await store.open()
    started = set(threading.enumerate()) - before
    assert {t.name for t in started} >= {"aijobs-sqlite-writer", "aijobs-sqlite-reader"}
    await store.close()
    for thread in started:
        thread.join(5)
        assert not thread.is_alive(), thread.name
