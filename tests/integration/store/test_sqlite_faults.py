"""The SQLite store when a transaction cannot complete: a COMMIT that fails on a write the file
system refuses, and a transaction abandoned while it waited for the write lock. Neither may
leave the write lock held (every other process would be locked out until a restart), and the
store that failed must write again once the fault is gone."""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import signal
import sqlite3
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from aijobs import errors
from aijobs.jobs import JobType, NewJob
from aijobs.store.sqlite import SQLiteStore

BIG = 2 * 1024 * 1024  # a payload past the file-size limit the failing process runs under


def new(size: int = 0) -> NewJob:
    return NewJob(job_type=JobType.TRAINING, queue="q", payload={"blob": "x" * size})


def write_from_another_connection(path: Path) -> None:
    """Fails with "database is locked" while anyone holds the write lock."""
    other = sqlite3.connect(path, timeout=2.0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM workers WHERE worker_id = 'nobody'")
        other.execute("COMMIT")
    finally:
        other.close()


def _commit_past_the_file_size_limit(path: str, pipe: Connection) -> None:
    """In its own process: a COMMIT the file system refuses (RLIMIT_FSIZE; the write fails with
    EFBIG, SIGXFSZ ignored), then, once told the limit is lifted, a write that must succeed."""

    async def main() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            wal = Path(path + "-wal")
            limit = max(wal.stat().st_size, Path(path).stat().st_size) + 64 * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
            try:
                await store.submit(new(BIG))
                pipe.send("committed")
            except errors.StoreUnavailable as exc:
                pipe.send(f"unavailable: {exc.detail}")
            except Exception as exc:
                pipe.send(f"other: {type(exc).__name__}: {exc}")
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
            pipe.recv()  # the parent wrote (or failed to): now our own write
            try:
                await store.submit(new())
                pipe.send("wrote again")
            except Exception as exc:
                pipe.send(f"cannot write: {type(exc).__name__}: {exc}")
        finally:
            await store.close()

    asyncio.run(main())


async def test_a_commit_the_file_system_refuses_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = tmp_path / "aijobs.db"
    setup = SQLiteStore(str(path))
    await setup.open()
    await setup.submit(new())
    await setup.close()
    parent, child = multiprocessing.get_context("spawn").Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_commit_past_the_file_size_limit, args=(str(path), child)
    )
    proc.start()
    try:
        assert parent.poll(60)
        answer = parent.recv()
        assert answer.startswith("unavailable:"), answer
        # The failing process is still alive, its connection open: the lock must be free.
        write_from_another_connection(path)
        parent.send("go")
        assert parent.poll(60)
        assert parent.recv() == "wrote again"
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0


async def test_a_transaction_abandoned_while_waiting_for_the_lock_leaves_no_lock_behind(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aijobs.db"
    store = SQLiteStore(str(path), busy_timeout=5.0)
    await store.open()
    try:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")  # another process's write transaction
        release = threading.Timer(1.0, holder.execute, ("ROLLBACK",))
        release.start()
        # The caller gives up (a request cancelled, a worker stopping) while the store waits
        # for the lock; the lock is then free, and the abandoned BEGIN takes it.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.submit(new()), 0.3)
        release.join()
        holder.close()
        await asyncio.to_thread(write_from_another_connection, path)
        job = await store.submit(new())
        assert (await store.get(job.id)).id == job.id
    finally:
        await store.close()
