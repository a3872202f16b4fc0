"""The Host-header allow-list: a page from another site that points its own name at 127.0.0.1
(DNS rebinding) reaches a local API with its own name in Host, and is refused here."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from aijobs.api.errors import envelope


def host_name(header: str) -> str:
    """A Host header's name, lowercase, without its port (IPv6 literals without brackets)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.partition(":")[0]


class AllowedHosts:
    def __init__(self, app: ASGIApp, names: list[str]) -> None:
        self.app = app
        self.names = frozenset(n.strip().strip("[]").lower() for n in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.names:
                answer = envelope(
                    400, "Bad request", f"Host {header!r} is not allowed (AIJOBS_ALLOWED_HOSTS)"
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
