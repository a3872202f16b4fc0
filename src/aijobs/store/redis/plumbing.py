"""The Redis store's plumbing, as its mixins (catalog.py, stats.py, workers.py) see it: declared
once here, implemented by RedisStore."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis


class RedisPlumbing:
    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[Any]], *, retry: bool) -> Any:
        raise NotImplementedError

    async def run_script(self, name: str, *args: Any, retry: bool = False) -> Any:
        raise NotImplementedError

    async def read_hash(self, name: str, field: str | None = None) -> Any:
        raise NotImplementedError

    def k(self, *parts: str) -> str:
        raise NotImplementedError
