"""What the Redis store keeps beside jobs: workers (heartbeats), models and API keys; the
JobStore methods for them, mixed into the store.

``P:keys`` maps a name to its key's digest and ``P:key_hashes`` a digest to the key's record,
so that checking a request's key is one HGET; create and revoke change both in one script.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from aijobs.apikeys import ApiKey
from aijobs.jobs import ModelRecord, WorkerInfo
from aijobs.store.base import key_name_taken, model_not_found
from aijobs.store.redis.plumbing import RedisPlumbing

log = logging.getLogger("aijobs.store.redis")

WORKER_FORGET_SECONDS = 86400.0  # a worker record silent this long is deleted


class RedisCatalog(RedisPlumbing):
    # -- workers -------------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        await self.run_script(
            "register_worker",
            info.worker_id,
            info.model_dump_json(),
            int(WORKER_FORGET_SECONDS * 1000),
            retry=True,
        )

    async def unregister_worker(self, worker_id: str) -> None:
        handed_back = await self.run_script("unregister_worker", worker_id, retry=True)
        if handed_back:
            log.info(
                "worker %s stopped: %d job(s) handed to it went back to pending",
                worker_id,
                len(handed_back),
            )

    async def live_workers(self, ttl_seconds: float) -> list[WorkerInfo]:
        rows = await self.run_script("live_workers", max(0, int(ttl_seconds * 1000)), retry=True)
        found = [
            WorkerInfo.model_validate_json(rows[i + 2]).model_copy(
                update={"last_seen": float(rows[i + 1]) / 1000.0}
            )
            for i in range(0, len(rows), 3)
        ]
        return sorted(found, key=lambda w: w.worker_id)

    # -- models --------------------------------------------------------------------------------
    async def add_model(self, model: ModelRecord) -> None:
        models, by_time, used = self.k("models"), self.k("models_by_time"), self.k("models_used")

        async def add(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(models, model.model_id, model.model_dump_json())
                pipe.zadd(by_time, {model.model_id: int(model.created_at * 1000)})
                pipe.zadd(used, {model.model_id: int(model.created_at * 1000)})
                await pipe.execute()

        await self.call(add, retry=True)

    async def get_model(self, model_id: str) -> ModelRecord:
        record: str | None = await self.read_hash("models", model_id)
        if record is None:
            raise model_not_found(model_id)
        return ModelRecord.model_validate_json(record)

    async def list_models(
        self, limit: int = 100, offset: int = 0, principal: str | None = None
    ) -> tuple[list[ModelRecord], int]:
        mine = "" if principal is None else principal
        page = (max(0, offset), max(0, limit))
        total, *rows = await self.run_script("list_models", *page, mine, retry=True)
        return [ModelRecord.model_validate_json(r) for r in rows], int(total)

    async def delete_model(self, model_id: str) -> ModelRecord:
        record = await self.run_script("delete_model", model_id, retry=True)
        if record is None:
            raise model_not_found(model_id)
        return ModelRecord.model_validate_json(record)

    async def forget_unused_models(self, unused_ms: int, limit: int) -> list[ModelRecord]:
        records = await self.run_script("forget_unused_models", unused_ms, limit, retry=True)
        return [ModelRecord.model_validate_json(r) for r in records]

    # -- API keys ------------------------------------------------------------------------------
    async def create_key(self, key: ApiKey) -> None:
        # Not retried: a lost reply followed by a retry would report the name as taken.
        if not await self.run_script("create_key", key.name, key.key_hash, key.model_dump_json()):
            raise key_name_taken(key.name)

    async def list_keys(self) -> list[ApiKey]:
        records: dict[str, str] = await self.read_hash("key_hashes")
        return sorted((ApiKey.model_validate_json(r) for r in records.values()), key=_name)

    async def revoke_key(self, name: str) -> bool:
        return bool(await self.run_script("revoke_key", name, retry=True))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        record: str | None = await self.read_hash("key_hashes", key_hash)
        return None if record is None else ApiKey.model_validate_json(record)


def _name(key: ApiKey) -> str:
    return key.name
