"""The SQLite store's long-poll (`wait_terminal`, behind GET /jobs/{id}/status?wait=...): one
watcher per store serves every waiter, so hundreds of waiters cost the one reader connection no
more queries than one does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aijobs.jobs import Job, JobType, NewJob, State
from aijobs.store.sqlite import SQLiteStore, watch

LONG = 60.0
MANY = 200
WINDOW = 1.0  # how long the reader's queries are counted


def new() -> NewJob:
    return NewJob(job_type=JobType.TRAINING, queue="q", payload={"n": 1})


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    """The API's store and a worker's, two clients of one file."""
    path = str(tmp_path / "store" / "aijobs.db")
    api, worker = SQLiteStore(path), SQLiteStore(path)
    await api.open()
    await worker.open()
    try:
        yield api, worker
    finally:
        await api.close()
        await worker.close()


async def reader_queries_while_waiting(api: SQLiteStore, job_ids: list[str]) -> int:
    """How many statements the API store's reader runs in WINDOW while `job_ids` are waited on
    (and nothing changes), counted by SQLite's trace callback on that very connection."""
    statements: list[str] = []
    reader = api._db._reader  # the one connection every API read goes through
    assert reader is not None
    tasks = [asyncio.create_task(api.wait_terminal(job_id, LONG)) for job_id in job_ids]
    await asyncio.sleep(0.3)  # every waiter is waiting
    await reader.run(lambda conn: conn.set_trace_callback(statements.append))
    await asyncio.sleep(WINDOW)
    await reader.run(lambda conn: conn.set_trace_callback(None))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(statements)


async def test_many_waiters_cost_the_reader_no_more_queries_than_one(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    api, _ = stores
    ids = [(await api.submit(new())).id for _ in range(MANY)]
    one = await reader_queries_while_waiting(api, ids[:1])
    many = await reader_queries_while_waiting(api, ids)
    assert one > 0  # the watcher does poll
    assert many <= 2 * one + 20, (one, many)  # not MANY times as many


async def test_every_waiter_wakes_when_its_job_ends(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    api, worker = stores
    ids = [(await api.submit(new())).id for _ in range(MANY)]
    waits = [asyncio.create_task(api.wait_terminal(job_id, LONG)) for job_id in ids]
    await asyncio.sleep(0.3)
    claims = await worker.claim(["q"], "w1", LONG, limit=MANY)
    assert len(claims) == MANY
    # Ended one at a time, in several ways, while every waiter waits.
    for i, claim in enumerate(claims):
        if i % 3 == 0:
            assert await worker.finish(claim.job.id, claim.token, {"i": i})
        elif i % 3 == 1:
            assert await worker.fail(claim.job.id, claim.token, "bad")
        else:
            await api.cancel(claim.job.id)
    ended: list[Job] = await asyncio.wait_for(asyncio.gather(*waits), 30)
    assert [job.id for job in ended] == ids
    assert {job.state for job in ended} == {State.COMPLETED, State.FAILED, State.CANCELLED}
    assert all(job.terminal for job in ended)


async def test_a_wait_times_out_with_the_job_as_it_is(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    api, worker = stores
    job = await api.submit(new())
    waiting = asyncio.create_task(api.wait_terminal(job.id, 0.5))
    await asyncio.sleep(0.1)
    await worker.claim(["q"], "w1", LONG)  # a change, but not the end: the wait goes on
    assert (await asyncio.wait_for(waiting, 10)).state is State.RUNNING


@pytest.mark.skipif(sys.platform != "linux", reason="the bell is heard through inotify")
async def test_commits_wake_waiters_through_the_bell_not_the_poll(
    stores: tuple[SQLiteStore, SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With both polls an hour apart, only the bell can wake them: rung after each commit,
    the one read it causes finds the commit."""
    monkeypatch.setattr(watch, "POLL_SECONDS", 3600.0)
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 3600.0)
    api, worker = stores
    job = await api.submit(new())
    ended = asyncio.create_task(api.wait_terminal(job.id, LONG))
    work = asyncio.create_task(worker.wait_for_work(["q"], LONG))
    await asyncio.sleep(0.3)
    await api.submit(new())  # another process's commit: the worker hears of it
    await asyncio.wait_for(work, 10)
    (claim, *_) = await worker.claim(["q"], "w1", LONG)
    assert await worker.finish(claim.job.id, claim.token, {})  # and the API of the end
    assert (await asyncio.wait_for(ended, 10)).state is State.COMPLETED


async def a_job_ends_while_the_api_waits(api: SQLiteStore, worker: SQLiteStore) -> None:
    """A job submitted through `api` and waited for there, claimed and finished by `worker`."""
    job = await api.submit(new())
    ended = asyncio.create_task(api.wait_terminal(job.id, LONG))
    await asyncio.sleep(0.1)
    (claim, *_) = await worker.claim(["q"], "w1", LONG)
    assert await worker.finish(claim.job.id, claim.token, {})
    assert (await asyncio.wait_for(ended, 10)).state is State.COMPLETED


def inotify_instances() -> int:
    """The inotify instances this process holds open."""
    links = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone by now
            links.append(os.readlink(fd))
    return links.count("anon_inode:inotify")


@pytest.mark.skipif(sys.platform != "linux", reason="the bell is heard through inotify")
async def test_the_bells_watch_outlives_each_wait(
    stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    """The watch task ends whenever nobody waits, and its inotify instance stays open until the
    store closes: closing one blocks the thread for a kernel grace period (milliseconds), which
    the event loop would pay at every job a worker waits for, every long-poll's end."""
    api, worker = stores
    before = inotify_instances()
    for _ in range(3):
        await a_job_ends_while_the_api_waits(api, worker)
        await asyncio.sleep(3 * watch.BELL_BACKSTOP_SECONDS)  # nobody waits: the task ends
        assert api._watch._task is None
        assert inotify_instances() == before + 1
    await api.close()
    assert inotify_instances() == before


async def test_without_a_bell_to_watch_waiters_are_woken_by_the_poll(
    stores: tuple[SQLiteStore, SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bell file that cannot be watched (gone, or no inotify watch left) leaves the watcher
    reading the change counter every POLL_SECONDS, not at the backstop."""
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 3600.0)
    api, worker = stores
    bell = api._db.bell_path
    assert bell is not None
    os.unlink(bell)  # before either watcher began: neither finds it
    await a_job_ends_while_the_api_waits(api, worker)


class ScriptedWatcher(watch.ChangeWatcher):
    """A watcher over a change counter the test moves. Its bell never rings (the task reads
    at its backstop), and as the task puts it away (it has seen that nobody waits and is
    ending), it lets a new waiter in: the one moment a waiter could find a task that is
    still running but will never look again."""

    def __init__(self) -> None:
        self.version = 0
        self.late: asyncio.Task[None] | None = None
        super().__init__(self._read_version, bell_path="unused")

    async def _read_version(self, sql: str, params: object) -> list[tuple[int]]:
        return [(self.version,)]

    async def _ring_on_commits(self, bell: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # never rings: the poll reads at its backstop
        except asyncio.CancelledError:
            if self.late is None:
                self.late = asyncio.ensure_future(self.until_changed(LONG))
            raise


async def test_a_commit_ringing_while_the_counter_is_read_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every ring is followed by a read of the counter: a commit that lands, and rings, while
    the watcher reads (for an earlier ring) is not lost with it."""
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 3600.0)
    watcher = RungWatcher()
    waiting = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.1)
    watcher.ring_during_next_read = True
    watcher.bell.set()  # a write that changed nothing; the commit comes during its read
    await asyncio.wait_for(waiting, 5)
    await watcher.close()


class RungWatcher(ScriptedWatcher):
    """A ScriptedWatcher whose bell the test rings (no backstop poll: an hour)."""

    ring_during_next_read = False

    async def _ring_on_commits(self, bell: asyncio.Event) -> None:
        self.bell = bell
        await asyncio.Event().wait()

    async def _read_version(self, sql: str, params: object) -> list[tuple[int]]:
        read = await super()._read_version(sql, params)
        if self.ring_during_next_read:
            self.ring_during_next_read = False
            self.version += 1
            self.bell.set()
        return read


async def test_a_waiter_arriving_as_the_watch_ends_is_still_woken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 0.05)
    watcher = ScriptedWatcher()
    first = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.1)
    watcher.version += 1
    await asyncio.wait_for(first, 5)  # woken; the task then finds nobody waiting and ends
    while watcher.late is None:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert not watcher.late.done()
    watcher.version += 1  # a commit while the late waiter waits: something must read it
    await asyncio.wait_for(watcher.late, 5)
    await watcher.close()


async def test_a_commit_since_the_callers_last_look_returns_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`since`: a commit seen after the caller last looked (its claim, or its read of the job)
    ends the wait at once, and one made while nobody waited is seen when the next wait
    begins."""
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 0.05)
    watcher = ScriptedWatcher()
    looked = time.monotonic()
    waiting = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.1)
    watcher.version += 1
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(watcher.until_changed(LONG, since=looked), 0.5)  # seen after it
    await asyncio.wait_for(watcher.until_ended("job_x", LONG, since=looked), 0.5)  # as well
    with pytest.raises(TimeoutError):  # nothing since now: it waits
        await asyncio.wait_for(watcher.until_changed(LONG, since=time.monotonic()), 0.3)
    await asyncio.sleep(0.2)  # nobody waits: the task ends
    watcher.version += 1  # a commit nobody is watching for
    await asyncio.wait_for(watcher.until_changed(LONG), 0.5)
    await watcher.close()
