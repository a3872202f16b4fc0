"""The SQLite store's connections to its file: one writer, one reader, transactions (waiting
for other connections' commits is watch.py's).

Two connections per store: one writer (guarded by an asyncio lock, since a transaction spans
several awaits) and one reader. Every write transaction is ``BEGIN IMMEDIATE``: it takes the
write lock up front, so it never has to upgrade a read snapshot (the one case where SQLite
returns SQLITE_BUSY without waiting). An in-memory database has one connection for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from aijobs import errors
from aijobs.store.sqlite.schema import SCHEMA, split_sql

BUSY_TIMEOUT_MS = 10_000


class Database:
    """The connections of one SQLiteStore; created on open(), creating the tables if needed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path in ("", ":memory:")
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        if not self._memory:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: the sqlite3 module never opens transactions behind our back;
        # we issue BEGIN IMMEDIATE / COMMIT ourselves.
        db = await aiosqlite.connect(
            self.path if not self._memory else ":memory:",
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
        )
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return db

    async def open(self) -> None:
        if self._writer is not None:
            return
        writer = await self._connect()
        try:
            if not self._memory:
                await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA synchronous = FULL")
            await writer.execute("BEGIN IMMEDIATE")
            try:
                for stmt in split_sql(SCHEMA):
                    await writer.execute(stmt)
                await writer.execute("COMMIT")
            except BaseException:
                if writer.in_transaction:
                    await writer.execute("ROLLBACK")
                raise
            if self._memory:
                reader = writer
            else:
                reader = await self._connect()
                await reader.execute("PRAGMA query_only = 1")
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        async with self._lock:
            if reader is not None and reader is not writer:
                await reader.close()
            if writer is not None:
                await writer.close()

    def _conn(self, which: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if which is None:
            raise errors.StoreUnavailable("the SQLite store is not open")
        return which

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        async with self._lock:
            db = self._conn(self._writer)
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        db = self._conn(self._reader)
        if self._memory:  # one shared connection: never read inside another task's transaction
            async with self._lock:
                return list(await db.execute_fetchall(sql, params))
        return list(await db.execute_fetchall(sql, params))
