"""API keys: random secrets that a store keeps only as SHA-256 digests.

A key is 32 random bytes (URL-safe base64) behind a prefix that makes it recognisable in a
config file or a leak scanner. A fast hash is right here: the key has 256 bits of entropy, so
there is nothing to guess, and every request hashes one. The store looks a key up by its digest;
the digest found is compared again in constant time before it counts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import BaseModel

KEY_PREFIX = "aij_"


class ApiKey(BaseModel):
    """A key as the store records it: never the key itself."""

    name: str
    key_hash: str  # SHA-256 of the key, hex
    admin: bool = False
    created_at: float


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


def matches(record: ApiKey, key: str) -> bool:
    return hmac.compare_digest(record.key_hash, hash_key(key))
