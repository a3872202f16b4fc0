"""The SQLite store's API keys (table api_keys): the JobStore key methods, mixed into the store."""

from __future__ import annotations

import sqlite3
from typing import Any

from aijobs.apikeys import ApiKey
from aijobs.store.base import key_name_taken
from aijobs.store.sqlite.database import Database

_KEY_COLUMNS = "name, key_hash, admin, created_at"


def _decode(row: Any) -> ApiKey:
    name, key_hash, admin, created_ms = row
    return ApiKey(name=name, key_hash=key_hash, admin=bool(admin), created_at=created_ms / 1000.0)


class SQLiteKeys:
    _db: Database

    async def create_key(self, key: ApiKey) -> None:
        try:
            async with self._db.transaction() as db:
                await db.execute(
                    f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?)",
                    (key.name, key.key_hash, int(key.admin), int(key.created_at * 1000)),
                )
        except sqlite3.IntegrityError:
            raise key_name_taken(key.name) from None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._db.read(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY name")
        return [_decode(row) for row in rows]

    async def revoke_key(self, name: str) -> bool:
        async with self._db.transaction() as db:
            cursor = await db.execute("DELETE FROM api_keys WHERE name = ?", (name,))
            return cursor.rowcount > 0

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._db.read(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return _decode(rows[0]) if rows else None
