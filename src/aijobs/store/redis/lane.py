"""A connection kept for one caller, its commands sent and read on it directly.

Some callers go to Redis one round trip at a time, over and over: a process's lone submits
(groups.py), a worker's wait and the pop of its inbox (handover.py), its finishes. redis-py's
client wraps each command in a pool lookup, a lock, a retry wrapper and its metrics hooks:
about a tenth of a submit's CPU (bench/bench_submit_floor.py), a third of a bare command's,
none of it needed by a connection that one caller keeps (RedisStore.lane).

Failures are the connection's own, as with redis-py's client: a read or a write that fails (or
is cancelled) closes the connection, the error is raised, and the next command connects again.
Before each command the connection is checked as the pool checks one it lends (no system call;
about 1.5 µs): a Redis restart closed it meanwhile, and a command never retried blindly (a
worker's wait, its finish) must not fail on that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool


class Lane:
    """One connection of `pool`, for the commands of one caller at a time."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._connection: AbstractConnection | None = None
        self._one_at_a_time = asyncio.Lock()  # a reply is read by the caller that asked

    async def execute_command(self, *args: Any) -> Any:
        async with self._one_at_a_time:
            connection = self._connection
            if connection is None:
                connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                self._connection = connection
            else:
                await self._pool.ensure_connection(connection)
            await connection.send_packed_command(connection.pack_command(*args), check_health=False)
            return await connection.read_response()

    async def fcall(self, function: str, numkeys: int, *args: Any) -> Any:
        return await self.execute_command("FCALL", function, numkeys, *args)

    async def function_load(self, code: str, replace: bool = False) -> Any:
        return await self.execute_command("FUNCTION", "LOAD", *("REPLACE",) * replace, code)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)
