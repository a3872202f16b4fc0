"""One watcher per SQLite store for everything in the process that waits on the file.

SQLite has no cross-process notifications, so a waiter learns of a commit from the file's
change counter (``PRAGMA data_version``, which moves whenever another connection commits). A
read per waiter would cost the store's one reader connection a query every few milliseconds for
each long-poll (a few hundred ``?wait=60`` requests starve every other read); instead one task
reads it for all of them, the way the Redis store holds one subscription for all its waiters. On
a change it asks once which of the watched jobs have ended (one query for all, not one each) and
wakes only their waiters. It runs only while someone waits.

When to read: on Linux, as soon as the kernel says the store's bell file was written (inotify,
by asyncinotify: every process's store writes a byte to it after each of its commits, see
database.py), with a slow poll behind that in case a notification is missed or a writer does not
ring (another program, a process killed between its commit and its ring); elsewhere, or where
inotify is out of instances, every POLL_SECONDS. The bell rings after the commit shows, so one
read of the counter finds it: a waiter hears of a commit within a fraction of a millisecond,
and an idle worker stops reading the file 200 times a second.

The inotify instance lives as long as the watcher, not one run of its task: closing one blocks
the closing thread for a kernel grace period (8 ms typically, up to 25), and a worker's watch
ends and begins again at every job.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aijobs.jobs import TERMINAL

if TYPE_CHECKING:
    from asyncinotify import Inotify

POLL_SECONDS = 0.005  # the change counter is read this often while anyone waits, without inotify
BELL_BACKSTOP_SECONDS = 0.1  # ... and this often with it, for commits that did not ring
IDS_PER_QUERY = 500  # watched jobs asked about per query (SQLite's bound on parameters is higher)

Read = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
ENDED = ", ".join(f"'{state.value}'" for state in TERMINAL)


class ChangeWatcher:
    """Wakes waiters on any commit (`until_changed`) or on the end of a job (`until_ended`)."""

    def __init__(self, read: Read, bell_path: str | None = None) -> None:
        self._read = read
        self._bell_path = bell_path  # written after each commit (None: an in-memory database)
        self._inotify: Inotify | None = None  # watching the bell, once opened
        self._inotify_failed = False  # no inotify or no bell here: poll
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
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            await asyncio.to_thread(inotify.close)  # the kernel's grace period, off the loop

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())

    def _anyone_waits(self) -> bool:
        return self._waiting > 0 or bool(self._ended)

    async def _poll(self) -> None:
        bell = asyncio.Event()  # set when a commit rang
        ringer = asyncio.create_task(self._ring_on_commits(bell))
        try:
            while self._anyone_waits():
                bell.clear()  # this read sees every commit that rang so far
                (now,), *_ = await self._read("PRAGMA data_version", ())
                changed = self._version is not None and now != self._version
                self._version = now
                if changed:
                    self._changed_at = time.monotonic()
                    self._changed.set()
                    self._changed = asyncio.Event()
                if (changed or self._recheck) and self._ended:
                    self._recheck = False
                    await self._wake_ended()
                pause = POLL_SECONDS if ringer.done() else BELL_BACKSTOP_SECONDS
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bell.wait(), pause)
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

    async def _ring_on_commits(self, bell: asyncio.Event) -> None:
        """Set `bell` at each write to the bell file, for as long as it runs; return at once
        where the kernel cannot tell (not Linux, in memory, no inotify instance left, no bell
        file to watch): the caller polls. Commits of this very process ring it too; the change
        counter tells them apart. Writes made while it did not run ring it once as it starts:
        one read more."""
        inotify = self._bell_watch()
        if inotify is None:
            return
        while True:
            await inotify.get()
            bell.set()

    def _bell_watch(self) -> Inotify | None:
        """The inotify instance watching the bell file, opened at the first call."""
        if self._inotify is not None or self._inotify_failed or self._bell_path is None:
            return self._inotify
        try:
            from asyncinotify import Inotify, Mask

            inotify = Inotify()
        except (ImportError, OSError):  # not Linux, or out of inotify instances
            self._inotify_failed = True
            return None
        try:
            inotify.add_watch(self._bell_path, Mask.MODIFY)
        except OSError:  # no bell file (it could not be made), or out of watches
            inotify.close()  # once: not at every start of the task
            self._inotify_failed = True
            return None
        self._inotify = inotify
        return inotify

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
