"""The SQLite store's connections to its file: one writer, one reader, transactions, and the
group commit of submissions (waiting for other connections' commits is watch.py's).

Two connections per store, one writer and one reader, each on a thread of its own
(thread.py). A write transaction is a plain function of the connection, run whole on the
writer's thread: the thread serializes the transactions, and each is one hand-over there and
back, not one per statement. Every write transaction is ``BEGIN IMMEDIATE``: it takes the write
lock up front, so it never has to upgrade a read snapshot (the one case where SQLite returns
SQLITE_BUSY without waiting). An in-memory database has one connection for both.

Errors of the file rather than of a statement (a lock held past the busy timeout, a full disk,
an I/O error: ``OUTAGES``) leave as ``errors.StoreUnavailable``, like a Redis outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from aijobs import errors
from aijobs.store.sqlite.schema import create_schema
from aijobs.store.sqlite.thread import ConnectionThread

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]  # run inside a write transaction, on its thread

BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's transaction to end


# Errors of the file, not of the statement: the store cannot serve now and may later (a lock
# another process holds past the busy timeout, a full disk, an I/O error, a file it cannot open).
# The worker retries through them and the API answers 503.
OUTAGES = {
    sqlite3.SQLITE_BUSY: "the SQLite database is locked by another process",
    sqlite3.SQLITE_LOCKED: "the SQLite database is locked",
    sqlite3.SQLITE_NOMEM: "SQLite is out of memory",
    sqlite3.SQLITE_IOERR: "the SQLite database had an I/O error",
    sqlite3.SQLITE_FULL: "the SQLite database or its disk is full",
    sqlite3.SQLITE_CANTOPEN: "the SQLite database cannot be opened",
    sqlite3.SQLITE_PROTOCOL: "the SQLite database's locks are contended",
    sqlite3.SQLITE_READONLY: "the SQLite database is read-only",
}


def store_outage(exc: sqlite3.Error) -> errors.StoreUnavailable | None:
    """The store-unavailable error an SQLite error amounts to; None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None)
    what = OUTAGES.get(code & 0xFF) if isinstance(code, int) else None
    return errors.StoreUnavailable(f"{what}: {exc}") if what else None


@contextlib.contextmanager
def outages_raised() -> Iterator[None]:
    """SQLite errors that are store outages leave as errors.StoreUnavailable."""
    try:
        yield
    except sqlite3.Error as exc:
        if outage := store_outage(exc):
            raise outage from exc
        raise


class Database:
    """The connections of one SQLiteStore; created on open(), creating the tables if needed."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._memory = path in ("", ":memory:")
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None
        self._group: list[tuple[Work, asyncio.Future[Any]]] = []  # waiting for the next commit
        self._committer: asyncio.Task[None] | None = None
        self._lone_in_flight = False  # a caller committing its own work, outside any group
        self._durable = True  # the writer's synchronous setting: FULL (True) or NORMAL
        self._bell: int | None = None  # the bell file, written after each commit (bell_path)
        if not self._memory:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @property
    def bell_path(self) -> str | None:
        """A file this store writes a byte to after each of its commits (None: in memory): a
        waiter the kernel tells of the write (watch.py) finds the commit at its first look.
        The write-ahead log itself is written before its commit shows (an fsync between)."""
        return None if self._memory else f"{self.path}-bell"

    def _ring(self) -> None:
        """After a commit: an error here must not turn a committed write into a failed one
        (waiters then see the commit at their backstop poll)."""
        if self._bell is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._bell, b"\0", 0)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the sqlite3 module never opens transactions behind our back;
        # we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(
            self.path if not self._memory else ":memory:",
            timeout=self.busy_timeout,
            isolation_level=None,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    async def open(self) -> None:
        if self._writer is not None:
            return
        writer = ConnectionThread("aijobs-sqlite-writer")
        reader = writer
        with outages_raised():
            try:
                await writer.open(self._connect)
                await writer.run(self._prepare)
                if not self._memory:
                    reader = ConnectionThread("aijobs-sqlite-reader")
                    await reader.open(self._connect)
                    await reader.run(lambda conn: conn.execute("PRAGMA query_only = 1"))
            except BaseException:
                await writer.close()
                if reader is not writer:
                    await reader.close()
                raise
        self._writer, self._reader = writer, reader
        if self.bell_path is not None:
            with contextlib.suppress(OSError):  # none: waiters poll
                self._bell = os.open(self.bell_path, os.O_WRONLY | os.O_CREAT, 0o644)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """On the writer's thread, its connection new: WAL, durable commits, the schema."""
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        self._durable = True
        self._transact(conn, create_schema, durable=True)

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None and reader is not writer:
            await reader.close()
        if writer is not None:
            await writer.close()  # after its last transaction: nothing rings the bell now
        bell, self._bell = self._bell, None
        if bell is not None:
            os.close(bell)

    @staticmethod
    def _conn(which: ConnectionThread | None) -> ConnectionThread:
        if which is None:
            raise errors.StoreUnavailable("the SQLite store is not open")
        return which

    async def write(self, work: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """`work` run whole in one write transaction, BEGIN IMMEDIATE ... COMMIT, on the
        writer's thread; rolled back if it raises, and its error raised here.

        durable=False: its COMMIT does not wait for an fsync (synchronous=NORMAL). It is on
        disk at the next durable COMMIT (which syncs the whole WAL) or checkpoint, and in the
        file for every process at once; only a power cut or an OS crash before then undoes it.
        For the steps nobody is told about and that a rerun makes again: claims (the workers
        on this host die with it, and the job reruns as after a lost lease), lease renewals,
        heartbeats, rescues, rate windows. What a caller is answered, or a worker reports
        (submit, finish, fail, cancel), is durable.

        A caller cancelled meanwhile is not answered, but the transaction still runs to its
        COMMIT or its rollback: no half-done transaction ever holds the write lock."""
        writer = self._conn(self._writer)
        with outages_raised():
            return await writer.run(lambda conn: self._transact(conn, work, durable))

    def _transact(
        self, conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], durable: bool
    ) -> T:
        """On the writer's thread, which alone touches `_durable`."""
        try:
            if durable is not self._durable:
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            # BEGIN and COMMIT inside the rollback too: a COMMIT that fails busy leaves the
            # transaction open, holding the write lock until this process ended.
            conn.execute("BEGIN IMMEDIATE")
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            _roll_back(conn)
            raise
        self._ring()
        return result

    async def grouped(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` run inside a write transaction it may share with other callers' (group
        commit), its result or its error returned once that transaction is over.

        No timer: a lone caller starts a transaction at once; callers arriving while one is in
        flight queue up, and the next transaction takes them all: one BEGIN IMMEDIATE, one
        COMMIT, one fsync for the lot. With several, each work runs in its own SAVEPOINT, so one
        that raises (a refusal: QueueFull, IdempotencyKeyReused) is undone alone and the others
        stand. A work must not catch its own errors half-way: the savepoint is its undo.

        Crash safety: nobody hears a result before the COMMIT that made it durable returned
        (synchronous=FULL: the WAL is fsynced first). A crash before that COMMIT loses the whole
        group and every caller of it is still waiting, unanswered, so each retries (with an
        idempotency key, to the job it meant); a crash after it loses nothing. A COMMIT that
        fails rolls everything back and every caller of the group gets that error. A caller
        cancelled before its turn is skipped; one cancelled during it may leave its work
        committed, as a caller cancelled just after its own COMMIT does.
        """
        if not self._lone_in_flight and self._committer is None:
            # Nothing in flight: this caller commits its own work, no task hop; those arriving
            # meanwhile queue up and go as the next group when it is done.
            self._lone_in_flight = True
            try:
                return await self.write(work)
            finally:
                self._lone_in_flight = False
                if self._group and self._committer is None:
                    self._committer = asyncio.create_task(self._commit_groups())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._group.append((work, future))
        if self._committer is None and not self._lone_in_flight:
            self._committer = asyncio.create_task(self._commit_groups())
        return cast(T, await future)

    async def _commit_groups(self) -> None:
        group: list[tuple[Work, asyncio.Future[Any]]] = []
        try:
            while self._group:
                group = [(w, f) for w, f in self._group if not f.done()]
                self._group = []
                if group:
                    await self._commit_group(group)
        finally:
            self._committer = None
            for _, future in group + self._group:  # only if this task itself was cancelled
                future.cancel()
            self._group = []

    async def _commit_group(self, group: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        works = [work for work, _ in group]
        shared = len(works) > 1  # a lone work's error undoes the transaction, as ever
        try:
            outcomes = await self.write(lambda conn: [_run_one(conn, w, shared) for w in works])
        except BaseException as exc:  # nothing of the group was committed
            for _, future in group:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (ok, value), (_, future) in zip(outcomes, group, strict=True):
            if not future.done():
                future.set_result(value) if ok else future.set_exception(value)

    async def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        reader = self._conn(self._reader)
        with outages_raised():
            return await reader.run(lambda conn: conn.execute(sql, params).fetchall())


def _run_one(conn: sqlite3.Connection, work: Work, shared: bool) -> tuple[bool, Any]:
    """(True, result) or (False, error) of one work of a group, in its own savepoint when the
    group is shared; an error of the savepoint itself ends the whole group."""
    if not shared:
        return True, work(conn)
    conn.execute("SAVEPOINT submission")
    try:
        outcome: tuple[bool, Any] = (True, work(conn))
    except Exception as exc:
        conn.execute("ROLLBACK TO submission")
        if isinstance(exc, sqlite3.Error):
            exc = store_outage(exc) or exc
        outcome = (False, exc)
    conn.execute("RELEASE submission")
    return outcome


def _roll_back(conn: sqlite3.Connection) -> None:
    # "no transaction is active" (a BEGIN that failed) is fine.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
