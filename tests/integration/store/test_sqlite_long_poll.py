"""The SQLite store's long-poll (`wait_terminal`, behind GET /jobs/{id}/status?wait=...): one
watcher per store serves every waiter, so hundreds of waiters cost the one reader connection no
more queries than one does."""

from __future__ import annotations

import asyncio
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
    await reader.set_trace_callback(statements.append)
    await asyncio.sleep(WINDOW)
    await reader.set_trace_callback(lambda _: None)
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


@pytest.mark.skipif(sys.platform != "linux", reason="the write-ahead log's bell is inotify")
async def test_commits_wake_waiters_through_the_log_not_the_poll(
    stores: tuple[SQLiteStore, SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With both polls an hour apart, only the bell (a write to the log) can wake them."""
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


class ScriptedWatcher(watch.ChangeWatcher):
    """A watcher over a change counter the test moves. Its bell never rings (the task reads
    at its backstop), and as the task puts it away (it has seen that nobody waits and is
    ending), it lets a new waiter in: the one moment a waiter could find a task that is
    still running but will never look again."""

    def __init__(self) -> None:
        self.version = 0
        self.late: asyncio.Task[None] | None = None
        super().__init__(self._read_version, log_path="unused")

    async def _read_version(self, sql: str, params: object) -> list[tuple[int]]:
        return [(self.version,)]

    async def _ring_on_writes(self, bell: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # never rings: the poll reads at its backstop
        except asyncio.CancelledError:
            if self.late is None:
                self.late = asyncio.ensure_future(self.until_changed(LONG))
            raise


async def test_a_commit_that_shows_after_another_under_one_bell_is_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two commits write the log before the first shows, so the bell rings once for both; the
    watcher sees the first, and must go on reading until the second shows (no bell will)."""
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 3600.0)
    watcher = RungWatcher()
    first = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.1)
    watcher.version += 1
    watcher.bell.set()  # both commits' writes; only the first commit shows yet
    await asyncio.wait_for(first, 5)
    second = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.005)
    watcher.version += 1  # the second commit shows, its write long rung
    await asyncio.wait_for(second, 1)
    await watcher.close()


async def test_a_write_during_a_settle_pause_is_read_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a write, the watcher reads the counter at growing pauses for a while (the settle
    time); another commit's write in that time cuts the pause short instead of waiting it out."""
    monkeypatch.setattr(watch, "BELL_BACKSTOP_SECONDS", 3600.0)
    monkeypatch.setattr(watch, "SETTLE_SECONDS", 7200.0)
    monkeypatch.setattr(watch, "SETTLE_POLL_SECONDS", 3600.0)  # pauses an hour long
    monkeypatch.setattr(watch, "SETTLE_POLL_MAX_SECONDS", 3600.0)
    watcher = RungWatcher()
    first = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.1)
    watcher.version += 1
    watcher.bell.set()
    await asyncio.wait_for(first, 5)  # read at the bell; the settle time begins
    second = asyncio.create_task(watcher.until_changed(LONG))
    await asyncio.sleep(0.05)
    watcher.version += 1
    watcher.bell.set()  # the next commit, well inside the settle time
    await asyncio.wait_for(second, 5)
    await watcher.close()


class RungWatcher(ScriptedWatcher):
    """A ScriptedWatcher whose bell the test rings."""

    async def _ring_on_writes(self, bell: asyncio.Event) -> None:
        self.bell = bell
        await asyncio.Event().wait()


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
