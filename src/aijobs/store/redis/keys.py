"""The Redis store's API keys: the JobStore key methods, mixed into the store.

``P:keys`` maps a name to its key's digest and ``P:key_hashes`` a digest to the key's record,
so that checking a request's key is one HGET; create and revoke change both in one script.
"""

from __future__ import annotations

from typing import Any

from aijobs.apikeys import ApiKey
from aijobs.store.base import key_name_taken


class RedisKeys:
    async def run_script(self, name: str, *args: Any, retry: bool = False) -> Any:
        raise NotImplementedError  # the store's

    async def read_hash(self, name: str, field: str | None = None) -> Any:
        raise NotImplementedError  # the store's

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
