"""The Redis store's plumbing, as its mixins (catalog.py, stats.py, workers.py) see it: declared
once here, implemented by RedisStore."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from aijobs.store.redis.lane import Lane


class RedisPlumbing:
    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[Any]], *, retry: bool) -> Any:
        raise NotImplementedError

    async def run_script(
        self, name: str, *args: Any, retry: bool = False, lane: Lane | None = None
    ) -> Any:
        raise NotImplementedError

    def lane(self, caller: str) -> Lane:
        raise NotImplementedError

    async def read_hash(self, name: str, field: str | None = None) -> Any:
        raise NotImplementedError

    def k(self, *parts: str) -> str:
        raise NotImplementedError
