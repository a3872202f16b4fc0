"""A sqlite3 connection and the one thread that uses it.

SQLite calls block (on the disk, on another process's write lock), so they run off the event
loop. Each hand-over to the thread and back costs two thread wake-ups, some 70 µs on a small VM,
where a statement itself takes a microsecond or two: so the store hands over whole units of work
(a write transaction, a read), never a statement at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]]


class ConnectionThread:
    """Runs functions of one sqlite3 connection, one at a time, in order, on its own thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        # A daemon: a process that never closes its store still exits (SQLite's journal keeps
        # a transaction cut short by the exit all or nothing, as for a kill).
        self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        self._thread.start()
        try:
            self._conn = await self._call(connect)
        except BaseException:
            self._calls.put(None)
            raise

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)`, run whole on the thread. A caller cancelled meanwhile is not
        answered, but its work still runs to its end once it began or was queued."""
        conn = self._conn
        if conn is None:
            raise sqlite3.ProgrammingError("the connection is closed")
        return await self._call(lambda: work(conn))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._call(conn.close)
            finally:
                self._calls.put(None)  # after everything queued before it

    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn))
        return await future

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn = call
            try:
                result, error = fn(), None
            except BaseException as exc:  # the caller's to handle, on its own thread
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody to answer
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
