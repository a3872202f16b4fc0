"""What the SQLite store keeps beside jobs: workers (heartbeats), models and API keys; the
JobStore methods for them, mixed into the store."""

from __future__ import annotations

import sqlite3
from typing import Any

from aijobs.apikeys import ApiKey
from aijobs.jobs import ModelRecord, WorkerInfo
from aijobs.store.base import key_name_taken, model_not_found
from aijobs.store.sqlite.clock import StoreClock
from aijobs.store.sqlite.database import Database

_KEY_COLUMNS = "name, key_hash, admin, created_at"


def _decode(row: Any) -> ApiKey:
    name, key_hash, admin, created_ms = row
    return ApiKey(name=name, key_hash=key_hash, admin=bool(admin), created_at=created_ms / 1000.0)


def insert_model(db: sqlite3.Connection, model: ModelRecord) -> None:
    """Inside the caller's write transaction (a finish commits its model with it)."""
    db.execute(
        "INSERT INTO models (model_id, record, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (model_id) DO UPDATE SET record = excluded.record, "
        "created_at = excluded.created_at",
        (model.model_id, model.model_dump_json(), int(model.created_at * 1000)),
    )


class SQLiteCatalog:
    _db: Database
    clock: StoreClock

    async def register_worker(self, info: WorkerInfo) -> None:
        # A heartbeat is a liveness deadline, like a lease: on the clock that cannot jump, so a
        # worker whose wall clock is off is alive all the same.
        now = self.clock.lease_ms()
        await self._db.write(
            lambda db: db.execute(
                "INSERT INTO workers (worker_id, info, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, "
                "last_seen = excluded.last_seen",
                (info.worker_id, info.model_dump_json(), now),
            ),
            durable=False,
        )

    async def unregister_worker(self, worker_id: str) -> None:
        await self._db.write(
            lambda db: db.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
        )

    async def live_workers(self, ttl_seconds: float) -> list[WorkerInfo]:
        now = self.clock.lease_ms()
        rows = await self._db.read(
            "SELECT info, last_seen FROM workers WHERE last_seen >= ? ORDER BY worker_id",
            (now - int(ttl_seconds * 1000),),
        )
        wall_minus_lease = self.clock.wall_ms() - now  # last seen, told on the wall clock
        return [
            WorkerInfo.model_validate_json(info).model_copy(
                update={"last_seen": (seen + wall_minus_lease) / 1000.0}
            )
            for info, seen in rows
        ]

    # -- models ------------------------------------------------------------------------------
    async def add_model(self, model: ModelRecord) -> None:
        await self._db.write(lambda db: insert_model(db, model))

    async def get_model(self, model_id: str) -> ModelRecord:
        rows = await self._db.read("SELECT record FROM models WHERE model_id = ?", (model_id,))
        if not rows:
            raise model_not_found(model_id)
        return ModelRecord.model_validate_json(rows[0][0])

    async def list_models(
        self, limit: int = 100, offset: int = 0, principal: str | None = None
    ) -> tuple[list[ModelRecord], int]:
        mine = "" if principal is None else "WHERE json_extract(record, '$.principal') = ?"
        filt = () if principal is None else (principal,)
        rows = await self._db.read(
            f"SELECT record FROM models {mine} ORDER BY created_at DESC, rowid DESC "
            "LIMIT ? OFFSET ?",
            (*filt, max(0, limit), max(0, offset)),
        )
        (total,), *_ = await self._db.read(f"SELECT count(*) FROM models {mine}", filt)
        return [ModelRecord.model_validate_json(r) for (r,) in rows], int(total)

    async def delete_model(self, model_id: str) -> ModelRecord:
        rows = await self._db.write(
            lambda db: db.execute(
                "DELETE FROM models WHERE model_id = ? RETURNING record", (model_id,)
            ).fetchall()
        )
        for (record,) in rows:
            return ModelRecord.model_validate_json(record)
        raise model_not_found(model_id)

    # -- API keys ----------------------------------------------------------------------------
    async def create_key(self, key: ApiKey) -> None:
        try:
            await self._db.write(
                lambda db: db.execute(
                    f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?)",
                    (key.name, key.key_hash, int(key.admin), int(key.created_at * 1000)),
                )
            )
        except sqlite3.IntegrityError:
            raise key_name_taken(key.name) from None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._db.read(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY name")
        return [_decode(row) for row in rows]

    async def revoke_key(self, name: str) -> bool:
        deleted = await self._db.write(
            lambda db: db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount
        )
        return deleted > 0

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._db.read(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return _decode(rows[0]) if rows else None
