"""What the auth tests share: keys made in a real store, signed tokens, and a real JWKS served
over HTTP by a tiny OpenID Connect provider (discovery document and key set) of the test's own."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aijobs.apikeys import ApiKey, hash_key, new_key
from aijobs.settings import Settings
from aijobs.store import open_store

LOCAL = "http://localhost"  # a Host the API answers while it listens on loopback
AUDIENCE = "aijobs-test"
SECRET = "a-test-secret-of-at-least-32-bytes!!"


async def _in_store(settings: Settings, name: str, admin: bool, revoke: bool) -> str:
    store = open_store(settings.resolved_store_url, settings=settings)
    await store.open()
    try:
        if revoke:
            assert await store.revoke_key(name)
            return ""
        secret = new_key()
        record = ApiKey(name=name, key_hash=hash_key(secret), admin=admin, created_at=time.time())
        await store.create_key(record)
        return secret
    finally:
        await store.close()


def add_key(settings: Settings, name: str, admin: bool = False) -> str:
    """A new API key in the settings' store (as `aijobs keys create` makes one)."""
    return asyncio.run(_in_store(settings, name, admin, revoke=False))


def revoke_key(settings: Settings, name: str) -> None:
    asyncio.run(_in_store(settings, name, False, revoke=True))


def claims(issuer: str, sub: str = "alice", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + 300, **overrides}


def unsigned(payload: dict[str, Any]) -> str:
    """A token with alg=none (no signature): what a forger sends."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    def sign(self, payload: dict[str, Any]) -> str:
        return jwt.encode(payload, self.private, self.algorithm, headers={"kid": self.kid})

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(
            jwt.get_algorithm_by_name(self.algorithm).to_jwk(self.private.public_key())
        )
        return jwk | {"kid": self.kid, "alg": self.algorithm, "use": "sig"}


@functools.cache
def _rsa_private(slot: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)  # slow: made once


def rsa_key(kid: str, slot: int = 0) -> SigningKey:
    """An RS256 key; keys of different slots differ (a session's keys are made once)."""
    return SigningKey(kid, "RS256", _rsa_private(slot))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Provider:
    """An OpenID Connect provider's public side: discovery and its current key set."""

    issuer: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0  # key set downloads

    def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        return {"keys": [k.public_jwk() for k in self.keys]}


@contextmanager
def oidc_provider(*keys: SigningKey) -> Iterator[Provider]:
    provider = Provider(keys=list(keys))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks.json"}
            elif self.path == "/jwks.json":
                body = provider.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
