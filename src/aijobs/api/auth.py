"""Who is calling, and what they may see: API keys, JWT bearer tokens, ownership.

Every route but /health depends on `caller`. With auth off (the default on a loopback address)
every caller is ANONYMOUS: an admin without a principal, so the API behaves as it always did.
With auth on, a request carries an API key (`Authorization: Bearer aij_...` or `X-API-Key`) or
a JWT (`Authorization: Bearer ...`); anything else is a 401. The key is looked up in the store on
every request, so a revoke holds at once on every API process.

A caller who is not an admin sees only the jobs and models of its own principal (403 for anyone
else's), and no host paths.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from aijobs import apikeys, errors
from aijobs.api.tokens import TokenVerifier
from aijobs.jobs import Job, ModelRecord
from aijobs.settings import Settings
from aijobs.store import JobStore

KEY_PRINCIPAL_PREFIX = "key:"
HOST_PATH_FIELDS = ("model_path",)  # what a job's result names on the API's host


@dataclass(frozen=True)
class Caller:
    principal: str | None  # None: anonymous (auth off)
    admin: bool
    # The API host's paths (the data roots, the state directory) and what a caller who is not
    # an admin reads instead of each, longest first.
    host_paths: tuple[tuple[re.Pattern[str], str], ...] = ()

    @property
    def scope(self) -> str | None:
        """The principal whose jobs and models this caller lists; None for all of them."""
        return None if self.admin else self.principal

    def check(self, owner: str | None, what: str) -> None:
        if not self.admin and owner != self.principal:
            raise errors.Forbidden(f"{what} belongs to someone else")

    def job(self, job: Job) -> Job:
        """The job as this caller may see it: without host paths unless an admin."""
        self.check(job.principal, f"job {job.id}")
        if self.admin:
            return job
        # The log is the logs route's to redact: a status read (polled) never shows it.
        result = job.result and {k: v for k, v in job.result.items() if k not in HOST_PATH_FIELDS}
        return job.model_copy(update={"result": result, "error": self.redact(job.error)})

    def redact(self, text: str | None) -> str | None:
        """`text` with the host's paths replaced, for a caller who is not an admin."""
        if self.admin or not text:
            return text
        for path, shown in self.host_paths:
            text = path.sub(shown, text)
        return text

    def idempotency_key(self, key: str | None) -> str | None:
        """Keys are per principal: one caller's key never names another's job."""
        return key if key is None or self.principal is None else f"{self.principal}\n{key}"


ANONYMOUS = Caller(principal=None, admin=True)


class Authenticator:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.required = settings.auth_required
        self.store = store
        self.tokens = TokenVerifier(settings) if settings.accepts_tokens else None
        self.host_paths = host_paths(settings)

    async def caller(self, request: Request) -> Caller:
        if not self.required:
            return ANONYMOUS
        credential = request_credential(request)
        if not credential:
            raise errors.Unauthorized(
                "send an API key (Authorization: Bearer <key>, or X-API-Key) or a bearer token"
            )
        if apikeys.looks_like_key(credential):
            return await self._key_caller(credential)
        if self.tokens is None:
            raise errors.Unauthorized("invalid API key")
        identity = await asyncio.to_thread(self.tokens.verify, credential)
        return Caller(identity.principal, identity.admin, self.host_paths)

    async def _key_caller(self, key: str) -> Caller:
        record = await self.store.key_by_hash(apikeys.hash_key(key))
        if record is None or not apikeys.matches(record, key):
            raise errors.Unauthorized("invalid API key")
        return Caller(KEY_PRINCIPAL_PREFIX + record.name, record.admin, self.host_paths)


def host_paths(settings: Settings) -> tuple[tuple[re.Pattern[str], str], ...]:
    """What a caller who is not an admin reads instead of each of the API host's paths (a
    whole path, never the start of a longer name), longest first."""
    named = [(str(root), f"<data root {n}>") for n, root in enumerate(settings.roots, 1)]
    named.append((str(settings.home.resolve()), "<aijobs home>"))
    named.sort(key=lambda pair: len(pair[0]), reverse=True)
    return tuple(
        (re.compile(re.escape(path) + r"(?![^/\s'\"),:;])"), shown) for path, shown in named
    )


def request_credential(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip() or None


async def caller(request: Request) -> Caller:
    authenticator: Authenticator = request.app.state.auth
    return await authenticator.caller(request)


CallerDep = Annotated[Caller, Depends(caller)]


async def own_model(
    read: Callable[[str], Awaitable[ModelRecord]], who: Caller, model_id: str
) -> ModelRecord:
    """The model's record, read by `read` (JobStore.get_model, or a copy of it), if `who` may
    use the model."""
    model = await read(model_id)
    who.check(model.principal, f"model {model_id}")
    return model


async def startup_problem(settings: Settings, store: JobStore) -> str | None:
    """Why the API must not start as configured: auth required, and no way to authenticate."""
    if not settings.auth_required or settings.accepts_tokens or await store.list_keys():
        return None
    where = f"on {settings.host}" if not settings.on_loopback else "with AIJOBS_AUTH=required"
    return (
        f"the API would serve {where} with authentication required, but no API key, "
        "AIJOBS_JWT_SECRET, AIJOBS_OIDC_ISSUER or AIJOBS_JWT_JWKS_URL is configured, so nobody "
        "could use it. Create a key with `aijobs keys create NAME --admin` (same "
        "AIJOBS_STORE_URL), configure a token issuer, or set AIJOBS_AUTH=off to serve without "
        "authentication (then anyone who reaches the port can submit, read and cancel any job)."
    )


def describe(settings: Settings) -> dict[str, Any]:
    """What the startup log says about auth (never a secret)."""
    return {
        "auth": "required" if settings.auth_required else "off",
        "tokens": settings.accepts_tokens,
        "hosts": settings.host_names or "*",
    }
