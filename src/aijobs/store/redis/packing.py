"""Commands packed into the Redis protocol by hiredis, in C, instead of redis-py's asyncio
connection, which packs every argument in Python (its synchronous connection already uses
hiredis). A submit is some twenty-five arguments and a worker's finish eight per job: the
Python packer was a tenth of the producer's CPU per job.

The bytes sent are the same (tests/unit/test_redis_packing.py compares them). Only arguments
whose encoding both packers agree on go to hiredis: str (UTF-8, as the store's connections
encode), bytes and int; a command with anything else (a float, which redis-py writes with
repr()) keeps redis-py's packer. Without hiredis installed, nothing changes.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import connection as aioconnection

try:
    import hiredis

    HIREDIS = hasattr(hiredis, "pack_command")
except ImportError:  # pragma: no cover - an install without the extra
    HIREDIS = False

_PACKED_AS_IS = frozenset({str, bytes, int})


class _HiredisPacking:
    """Mixed into the pool's own connection class (TCP, TLS or Unix socket alike)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (
            type(first) is str
            and " " not in first
            and all(type(arg) in _PACKED_AS_IS for arg in args)
        ):
            return [hiredis.pack_command(args)]
        # A command name of several words ("SCRIPT LOAD"), or an argument to encode otherwise.
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


_classes: dict[type, type] = {}


def pack_with_hiredis(pool: aioconnection.ConnectionPool) -> None:
    """Make the connections `pool` opens from now on pack their commands with hiredis."""
    if not HIREDIS:
        return
    base = pool.connection_class
    if issubclass(base, _HiredisPacking):
        return
    if base not in _classes:
        _classes[base] = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    pool.connection_class = _classes[base]
