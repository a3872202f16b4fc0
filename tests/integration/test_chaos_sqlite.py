"""Chaos of the SQLite store's own (docs/protocol.md): a worker SIGKILLed while it holds the
write lock, sixteen processes writing at once, a reader that starves the checkpoint, and what a
power cut leaves on disk.

Each system test ends with every accepted job ended exactly once, then the oracle (conftest).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from aijobs.jobs import JobType, NewJob, State
from aijobs.store.sqlite import SQLiteStore
from tests.integration.harness import QUICK, System, wait_until
from tests.integration.invariants import assert_each_ended_once, sqlite_problems

WAL_WRITE_LOCK = 120  # the byte of the -shm file a writer locks (SQLite's os_unix.c)


def write_lock_holders(db: Path) -> set[int]:
    """PIDs holding SQLite's WAL write lock on `db` (POSIX locks, from /proc/locks)."""
    shm = os.stat(f"{db}-shm")
    inode = f"{os.major(shm.st_dev):02x}:{os.minor(shm.st_dev):02x}:{shm.st_ino}"
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 8 and fields[5] == inode and int(fields[6]) <= WAL_WRITE_LOCK:
            end = fields[7]
            if end == "EOF" or int(end) >= WAL_WRITE_LOCK:
                holders.add(int(fields[4]))
    return holders


@pytest.mark.slow
def test_a_worker_killed_inside_a_write_transaction(system: System) -> None:
    system.start_api()
    worker = system.start_worker("sklearn", concurrency=2)
    jobs = [system.submit("/jobs/training", QUICK)]
    model_id = system.wait(jobs[0])["result"]["model_id"]
    jobs += [system.submit("/jobs/training", QUICK) for _ in range(12)]
    inference = {"model_id": model_id, "input_data": "5.1,3.5,1.4,0.2"}
    db = system.home / "aijobs.db"
    rng = random.Random(3)
    deadline = time.monotonic() + 120
    while True:  # freeze the worker at random moments until one finds it mid-transaction
        assert time.monotonic() < deadline, "never caught the worker holding the write lock"
        # A transaction is one short trip to the worker's writer thread: keep it writing (a
        # claim and a durable finish per job) so that a random moment finds one often enough.
        jobs.append(system.submit("/jobs/inference", inference))
        time.sleep(rng.random() * 0.02)
        worker.send_signal(signal.SIGSTOP)
        if worker.pid in write_lock_holders(db):
            worker.send_signal(signal.SIGKILL)
            break
        worker.send_signal(signal.SIGCONT)
    worker.wait()
    # the kernel dropped the lock with the process: another writer gets in at once
    check = sqlite3.connect(db, timeout=10)
    try:
        check.execute("BEGIN IMMEDIATE")
        check.rollback()
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        check.close()
    system.start_worker("sklearn", concurrency=2)
    for job in jobs:
        assert system.wait(job, timeout=180)["status"] == "completed"
    assert_each_ended_once(system, jobs)


# -- sixteen writers ---------------------------------------------------------------------------
WRITERS = 16
JOBS_EACH = 25


def _writer(path: str, barrier: Any, name: str) -> None:
    """One OS process: submits, claims and finishes its share through its own store."""

    async def main() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            barrier.wait(60)
            for i in range(JOBS_EACH):
                await store.submit(NewJob(job_type=JobType.TRAINING, queue="q", payload={"i": i}))
                for claim in await store.claim(["q"], name, 60.0, limit=2):
                    assert await store.finish(claim.job.id, claim.token, {"by": name})
        finally:
            await store.close()

    asyncio.run(main())


def test_sixteen_processes_write_at_once_and_no_busy_error_escapes(tmp_path: Path) -> None:
    path = str(tmp_path / "aijobs.db")
    asyncio.run(_open_and_close(path))  # the schema, before the race
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(path, barrier, f"w{i}")) for i in range(WRITERS)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(240)
        # a "database is locked" (or any error) in a writer fails that process
        assert [p.exitcode for p in procs] == [0] * WRITERS
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    rest = asyncio.run(_drain(path))
    jobs = asyncio.run(_all_jobs(path))
    assert len(jobs) == WRITERS * JOBS_EACH
    assert {state for state, _ in jobs.values()} == {State.COMPLETED}
    by = {result["by"] for _, result in jobs.values() if result}
    assert len(by) >= 2, by  # not vacuous: several processes really wrote
    assert rest <= WRITERS * JOBS_EACH
    assert sqlite_problems(Path(path)) == []


async def _open_and_close(path: str) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.close()


async def _drain(path: str) -> int:
    """Finish what the writers left pending (each claims what it can, not all it submitted)."""
    store = SQLiteStore(path)
    await store.open()
    n = 0
    try:
        while claims := await store.claim(["q"], "drain", 60.0, limit=50):
            for claim in claims:
                assert await store.finish(claim.job.id, claim.token, {"by": "drain"})
                n += 1
    finally:
        await store.close()
    return n


async def _all_jobs(path: str) -> dict[str, tuple[State, Any]]:
    store = SQLiteStore(path)
    await store.open()
    try:
        page, _ = await store.list_jobs(limit=10_000)  # rows only: each job read for its result
        jobs = [await store.get(row.id) for row in page]
        return {job.id: (job.state, job.result) for job in jobs}
    finally:
        await store.close()


# -- a starved checkpoint ----------------------------------------------------------------------
def checkpoint(db: Path) -> tuple[int, int, int]:
    """A passive checkpoint (it waits for no one): (busy, frames in the WAL, frames copied)."""
    check = sqlite3.connect(db, timeout=10)
    try:
        busy, frames, done = check.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(frames), int(done)
    finally:
        check.close()


def fully_checkpointed(db: Path) -> bool:
    _, frames, done = checkpoint(db)
    return frames == done


@pytest.mark.slow
def test_a_long_reader_starves_the_checkpoint_and_the_wal_recovers(system: System) -> None:
    system.start_api()
    system.start_worker("sklearn", concurrency=2)
    db = system.home / "aijobs.db"
    reader = sqlite3.connect(db, timeout=10, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobs").fetchall()  # a snapshot held open
    try:
        starved = [system.submit("/jobs/training", QUICK) for _ in range(6)]
        for job in starved:  # the system works on while the reader pins the WAL
            assert system.wait(job, timeout=180)["status"] == "completed"
        busy, frames, done = checkpoint(db)
        assert done < frames, (busy, frames, done)  # starved: not all of it can be copied back
    finally:
        reader.execute("COMMIT")
        reader.close()
    after = [system.submit("/jobs/training", QUICK) for _ in range(3)]
    for job in after:
        assert system.wait(job, timeout=180)["status"] == "completed"
    # with the long reader gone, nothing of the system's own pins an old snapshot: a
    # checkpoint copies every frame back, and the WAL can start over
    wait_until(lambda: fully_checkpointed(db), 30, "a checkpoint of every frame")
    assert_each_ended_once(system, [*starved, *after])


# -- a power cut -------------------------------------------------------------------------------
SNAPSHOTS = 12


def _burst(path: str, acks: str, stop: Any) -> None:
    """One OS process: submits jobs as fast as it can (claiming and finishing some, so that every
    kind of write is in flight), and appends each submitted job's id to `acks` once its submit
    has returned: acknowledged, as the API's 200 is."""

    async def main() -> None:
        store = SQLiteStore(path)
        await store.open()
        fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            i = 0
            while not stop.is_set():
                kind = JobType.TRAINING if i % 3 else JobType.INFERENCE
                job = await store.submit(NewJob(job_type=kind, queue="q", payload={"i": i}))
                os.write(fd, f"{job.id}\n".encode())
                if i % 4 == 0:
                    for claim in await store.claim(["q"], "burst", 60.0, limit=2):
                        assert await store.finish(claim.job.id, claim.token, {"i": i})
                i += 1
        finally:
            os.close(fd)
            await store.close()

    asyncio.run(main())


def test_what_a_power_cut_leaves_on_disk_opens_whole_with_every_acknowledged_job(
    tmp_path: Path,
) -> None:
    """The database file and its WAL as they are on disk at arbitrary instants of a burst of
    commits (the writer frozen: mid-commit, mid-checkpoint), without the -shm index, which a
    power cut does not keep: each copy opens, passes integrity_check and our invariants, and
    holds every job whose submit was acknowledged before it was taken (synchronous=FULL: a
    COMMIT is durable when it returns). A fault injector that reorders or drops unsynced writes
    (LazyFS, dm-flakey) needs privileges these tests do not have."""
    path = tmp_path / "aijobs.db"
    acks = tmp_path / "acks"
    asyncio.run(_open_and_close(str(path)))
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    writer = ctx.Process(target=_burst, args=(str(path), str(acks), stop))
    writer.start()
    rng = random.Random(5)
    snapshots: list[tuple[Path, set[str]]] = []
    try:
        wait_until(lambda: acks.exists() and acks.stat().st_size > 0, 60, "the burst")
        assert writer.pid is not None
        for n in range(SNAPSHOTS):
            time.sleep(rng.random() * 0.25)
            os.kill(writer.pid, signal.SIGSTOP)
            try:
                acknowledged = set(acks.read_text().split())
                copy = tmp_path / f"cut{n}" / "aijobs.db"
                copy.parent.mkdir()
                for suffix in ("", "-wal"):
                    shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
            finally:
                os.kill(writer.pid, signal.SIGCONT)
            snapshots.append((copy, acknowledged))
    finally:
        stop.set()
        writer.join(60)
        if writer.is_alive():
            writer.kill()
    assert writer.exitcode == 0
    assert len(snapshots[-1][1]) > len(snapshots[0][1])  # not vacuous: commits went on between
    for copy, acknowledged in snapshots:
        db = sqlite3.connect(copy)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], copy
            stored = {job_id for (job_id,) in db.execute("SELECT id FROM jobs")}
        finally:
            db.close()
        assert acknowledged <= stored, (copy, len(acknowledged - stored))
        assert sqlite_problems(copy) == [], copy
        assert len(asyncio.run(_all_jobs(str(copy)))) == len(stored)  # and the store opens it
