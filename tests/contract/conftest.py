"""Fixtures for the store contract suite: every backend in BACKENDS runs every contract test.

Adding a backend is one entry in BACKENDS: a factory that builds an unopened store for a test's
location. Calling the factory again with the same location must reach the same data (that is how
the durability and multi-client tests get a second client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from aijobs.store.base import JobStore
from tests.redis_server import own_redis, redis_server  # noqa: F401 - fixtures


class StoreFactory(Protocol):
    def __call__(self, **options: Any) -> JobStore: ...


def _sqlite(location: Path) -> StoreFactory:
    from aijobs.store.sqlite import SQLiteStore

    def make(**options: Any) -> JobStore:
        return SQLiteStore(str(location / "store" / "aijobs.db"), **options)

    return make


def _redis(location: Path) -> StoreFactory:
    """A shared redis-server (tests/redis_server.py), under a key prefix of the test's own."""
    from aijobs.store.redis import RedisStore
    from tests.redis_server import prefix_for, shared_server

    url, prefix = shared_server().url, prefix_for(location)

    def make(**options: Any) -> JobStore:
        return RedisStore(url, prefix=prefix, **options)

    return make


# name -> (test location -> factory).
BACKENDS: dict[str, Callable[[Path], StoreFactory]] = {
    "sqlite": _sqlite,
    "redis": _redis,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> StoreFactory:
    """Builds more (unopened) clients of the same store; the caller opens and closes them."""
    return BACKENDS[backend](tmp_path)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[JobStore]:
    s = store_factory()
    await s.open()
    try:
        yield s
    finally:
        await s.close()
