"""The Python SDK sends its API key (or token) as a bearer credential, sync and async."""

from __future__ import annotations

import httpx
import pytest

from aijobs.client import AsyncClient, Client

HEALTHY = {"status": "healthy", "timestamp": "t", "version": "1", "store": "sqlite"}


def recorder(seen: list[httpx.Headers]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json=HEALTHY)

    return httpx.MockTransport(answer)


def test_the_key_is_given_or_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Headers] = []
    monkeypatch.delenv("AIJOBS_API_KEY", raising=False)
    with Client("http://api", transport=recorder(seen)) as anonymous:
        anonymous.health()
    with Client("http://api", api_key="aij_given", transport=recorder(seen)) as given:
        given.health()
    monkeypatch.setenv("AIJOBS_API_KEY", "aij_from_env")
    with Client("http://api", transport=recorder(seen)) as from_env:
        from_env.health()
    own = {"Authorization": "Bearer a.jwt.token"}
    with Client("http://api", api_key="aij_x", headers=own, transport=recorder(seen)) as mine:
        mine.health()
    assert [h.get("authorization") for h in seen] == [
        None,
        "Bearer aij_given",
        "Bearer aij_from_env",
        "Bearer a.jwt.token",
    ]


async def test_the_async_client_sends_it_too() -> None:
    seen: list[httpx.Headers] = []
    async with AsyncClient("http://api", api_key="aij_async", transport=recorder(seen)) as c:
        await c.health()
    assert seen[0]["authorization"] == "Bearer aij_async"
