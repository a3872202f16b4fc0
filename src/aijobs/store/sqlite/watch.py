"""One watcher per SQLite store for everything in the process that waits on the file.

SQLite has no cross-process notifications, so a waiter learns of a commit from the file's
change counter (``PRAGMA data_version``, which moves whenever another connection commits). A
read per waiter would cost the store's one reader connection a query every few milliseconds for
each long-poll (a few hundred ``?wait=60`` requests starve every other read); instead one task
reads it for all of them, the way the Redis store holds one subscription for all its waiters. On
a change it asks once which of the watched jobs have ended (one query for all, not one each) and
wakes only their waiters. It runs only while someone waits.

When to read: on Linux, as soon as the kernel says the write-ahead log was written (inotify, by
asyncinotify: every commit of every process writes it), with a slow poll behind that in case a
notification is missed; elsewhere, or where inotify is out of instances, every POLL_SECONDS.
Woken by the log rather than by the poll, a waiter hears of a commit within a fraction of a
millisecond instead of POLL_SECONDS / 2 on average, and an idle worker stops reading the file
200 times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aijobs.jobs import TERMINAL

POLL_SECONDS = 0.005  # the change counter is read this often while anyone waits, without inotify
BELL_BACKSTOP_SECONDS = 0.1  # ... and this often with it, in case a notification is missed
SETTLE_SECONDS = 0.05  # after a write to the log, its commit shows within this (an fsync) ...
SETTLE_POLL_SECONDS = 0.001  # ... read soon after it, then ever less often up to ...
SETTLE_POLL_MAX_SECONDS = 0.008  # ... this, until SETTLE_SECONDS after the last write
IDS_PER_QUERY = 500  # watched jobs asked about per query (SQLite's bound on parameters is higher)

Read = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
ENDED = ", ".join(f"'{state.value}'" for state in TERMINAL)


class ChangeWatcher:
    """Wakes waiters on any commit (`until_changed`) or on the end of a job (`until_ended`)."""

    def __init__(self, read: Read, log_path: str | None = None) -> None:
        self._read = read
        self._log_path = log_path  # the write-ahead log (None: an in-memory database)
        self._changed = asyncio.Event()  # set, then replaced, at each commit seen
        self._ended: dict[str, set[asyncio.Event]] = {}  # job id -> its waiters
        self._recheck = False  # a job was added since the last look: look even without a change
        self._waiting = 0  # waiters on any commit
        self._task: asyncio.Task[None] | None = None
        # The change counter as last read, kept between runs of the task: a commit made while
        # nobody waited is seen at the next start, not taken for the starting point.
        self._version: int | None = None
        self._changed_at = -math.inf  # monotonic time the last commit was seen

    async def until_changed(self, timeout: float, since: float = math.inf) -> None:
        """Return once another connection committed, or after `timeout` seconds; at once if a
        commit was seen after `since` (time.monotonic() of the caller's last look at the
        data): one that landed between that look and this wait is not slept through."""
        if self._changed_at > since:
            return
        if self._version is None and since < math.inf:
            # Nothing counted yet, so no telling whether a commit landed since the caller
            # looked: count from now, and let the caller look once more.
            (self._version,), *_ = await self._read("PRAGMA data_version", ())
            return
        self._waiting += 1
        changed = self._changed
        try:
            self._ensure_running()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(0.0, timeout))
        finally:
            self._waiting -= 1

    async def until_ended(self, job_id: str, timeout: float, since: float = math.inf) -> None:
        """Return soon after the job may have ended (or the watch failed), or after `timeout`
        seconds; at once if a commit was seen after `since` (the caller's read of the job). The
        caller reads the job again to learn which."""
        if self._changed_at > since:  # its end may be that commit, already told to no one
            return
        ended = asyncio.Event()
        self._ended.setdefault(job_id, set()).add(ended)
        self._recheck = True  # it may have ended before this watch began
        try:
            self._ensure_running()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), max(0.0, timeout))
        finally:
            waiters = self._ended.get(job_id)
            if waiters is not None:
                waiters.discard(ended)
                if not waiters:
                    del self._ended[job_id]

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake_all()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())

    def _anyone_waits(self) -> bool:
        return self._waiting > 0 or bool(self._ended)

    async def _poll(self) -> None:
        bell = asyncio.Event()  # set when the log was written
        ringer = asyncio.create_task(self._ring_on_writes(bell))
        clock = asyncio.get_running_loop().time
        settle_until = 0.0
        settle_poll = SETTLE_POLL_SECONDS
        try:
            while self._anyone_waits():
                (now,), *_ = await self._read("PRAGMA data_version", ())
                changed = self._version is not None and now != self._version
                self._version = now
                if changed:
                    settle_poll = SETTLE_POLL_SECONDS  # another may be on its way: look soon
                    self._changed_at = time.monotonic()
                    self._changed.set()
                    self._changed = asyncio.Event()
                if (changed or self._recheck) and self._ended:
                    self._recheck = False
                    await self._wake_ended()
                if ringer.done():
                    await asyncio.sleep(POLL_SECONDS)
                elif clock() < settle_until:
                    # A new write cuts the pause short: slept through, a commit landing late in
                    # the settle time would wait out the longest pause before it is seen.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(bell.wait(), settle_poll)
                    settle_poll = min(2 * settle_poll, SETTLE_POLL_MAX_SECONDS)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(bell.wait(), BELL_BACKSTOP_SECONDS)
                if bell.is_set():
                    # The log is written before the commit shows (its fsync comes between),
                    # and the writes of several commits ring the bell once: read the counter
                    # again shortly, and on until SETTLE_SECONDS after the last write, even
                    # past a change (it may be the first of them).
                    bell.clear()
                    settle_until = clock() + SETTLE_SECONDS
                    settle_poll = SETTLE_POLL_SECONDS
        except Exception:
            # The store is closed or unreadable: every waiter reads again and meets the error.
            self._wake_all()
        finally:
            # Done from here (no await since the last look at the waiters): a waiter arriving
            # while the bell is put away starts a new task instead of waiting on this one.
            if self._task is asyncio.current_task():
                self._task = None
            ringer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ringer

    async def _ring_on_writes(self, bell: asyncio.Event) -> None:
        """Set `bell` at each write to the log, for as long as it runs; return at once where
        the kernel cannot tell (not Linux, no log, no inotify instance left): the caller polls.
        Writes of this very process ring it too; the change counter tells them apart."""
        if self._log_path is None:
            return
        try:
            from asyncinotify import Inotify, Mask
        except (ImportError, OSError):  # not Linux
            return
        try:
            inotify = Inotify()
        except OSError:  # out of inotify instances (fs.inotify.max_user_instances)
            return
        with inotify:
            try:
                inotify.add_watch(self._log_path, Mask.MODIFY)
            except OSError:  # no log yet, or out of watches
                return
            while True:
                await inotify.get()
                bell.set()

    async def _wake_ended(self) -> None:
        ids = list(self._ended)
        for i in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[i : i + IDS_PER_QUERY]
            # A job that is not there any more has ended too: its waiter reads "not found".
            rows = await self._read(
                f"SELECT id FROM jobs WHERE id IN ({', '.join('?' * len(chunk))}) "
                f"AND state NOT IN ({ENDED})",
                chunk,
            )
            for job_id in set(chunk) - {job_id for (job_id,) in rows}:
                for ended in self._ended.get(job_id, ()):
                    ended.set()

    def _wake_all(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for waiters in self._ended.values():
            for ended in waiters:
                ended.set()
