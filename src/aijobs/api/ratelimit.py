"""Rate limits per caller, counted in the store so that every API process shares them.

A caller is its principal when the request was authenticated (api/auth.py runs first), else
its client address: the socket's peer, or the address a trusted reverse proxy put in
X-Forwarded-For (AIJOBS_TRUSTED_PROXIES); from anyone else the header is ignored, since a
client could write any address there.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Depends, Request, Response

from aijobs import errors
from aijobs.api.auth import Caller, CallerDep
from aijobs.api.deps import SettingsDep, StoreDep
from aijobs.jobs import RateDecision
from aijobs.settings import IPNetwork, Rate, Settings


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request, proxies: Sequence[IPNetwork]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
    address in X-Forwarded-For that is not one of the trusted proxies (each proxy appends the
    address it saw, so the right end of the list is the part that can be believed)."""
    peer = request.client.host if request.client else "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, proxies):
            return hop
    return peer


def counted_as(request: Request, settings: Settings, who: Caller) -> str:
    """Who a request counts against: its principal, else its client address."""
    if who.principal:
        return f"principal:{who.principal}"
    return f"address:{client_address(request, settings.proxy_networks)}"


def rate_headers(decision: RateDecision) -> dict[str, str]:
    reset = str(math.ceil(decision.reset_seconds))
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": reset,
    }


def _limiter(
    kind: str, rate_of: Callable[[Settings], Rate | None]
) -> Callable[..., Awaitable[None]]:
    async def limit(
        request: Request, response: Response, store: StoreDep, settings: SettingsDep, who: CallerDep
    ) -> None:
        rate = rate_of(settings)
        if rate is None:
            return
        key = f"{kind}:{counted_as(request, settings, who)}"
        decision = await store.take_tokens(key, rate.limit, rate.window_seconds)
        headers = rate_headers(decision)
        if not decision.allowed:
            raise errors.RateLimited(
                f"rate limit of {rate.limit} {kind} requests per {rate.window_seconds:g} s "
                f"(AIJOBS_RATE_LIMIT_{kind.upper()}) reached; retry in "
                f"{headers['RateLimit-Reset']} s",
                headers={**headers, "Retry-After": headers["RateLimit-Reset"]},
            )
        response.headers.update(headers)

    return limit


# Writes (submissions, cancels, model deletions) and reads count against separate limits.
SubmitLimit = Depends(_limiter("submit", lambda s: s.submit_rate))
ReadLimit = Depends(_limiter("read", lambda s: s.read_rate))
