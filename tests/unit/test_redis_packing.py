"""The Redis store's connections pack commands with hiredis (store/redis/packing.py): the bytes
on the wire are redis-py's own, for every kind of argument the store sends."""

from __future__ import annotations

from typing import Any

import pytest
from redis import exceptions as rex
from redis.asyncio import connection as aioconnection

from aijobs.store.redis.packing import pack_with_hiredis

pytest.importorskip("hiredis")

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 1, "{aijobs}", 1000, 0, "job_1", "", "é ✓ \r\n", -5, 0, 2**70),
    ("HSET", "k", "f", b"\x00\xff raw"),
    ("SET", "big", "x" * 100_000),  # past redis-py's buffer cutoff: it sends it in chunks
    ("SCRIPT LOAD", "return 1"),  # a command name of two words
    ("SET", "k", 1.5),  # a float: redis-py's packer, repr()
    ("PING",),
]


def connections() -> tuple[aioconnection.AbstractConnection, aioconnection.AbstractConnection]:
    pool = aioconnection.ConnectionPool()
    plain = pool.connection_class(**pool.connection_kwargs)
    pack_with_hiredis(pool)
    pack_with_hiredis(pool)  # twice: still one layer
    packed = pool.connection_class(**pool.connection_kwargs)
    assert type(packed) is not type(plain)
    assert isinstance(packed, type(plain))
    assert type(packed).__mro__.count(type(plain)) == 1
    return plain, packed


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    plain, packed = connections()
    assert b"".join(packed.pack_command(*args)) == b"".join(plain.pack_command(*args))


def test_same_bytes_in_a_pipeline() -> None:
    plain, packed = connections()
    assert b"".join(packed.pack_commands(COMMANDS)) == b"".join(plain.pack_commands(COMMANDS))


def test_what_redis_py_refuses_is_refused() -> None:
    plain, packed = connections()
    for conn in (plain, packed):
        with pytest.raises(rex.DataError):
            conn.pack_command("SET", "k", True)
