"""Request body size limit, enforced before the body is parsed (chunked uploads included).

A refused body is read and dropped, up to DISCARD_BYTES, before the 413 goes out: a server that
closes on a client still sending makes the client's TCP stack see a reset, and most clients
(Python's urllib, requests) then report a broken connection instead of the 413."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DISCARD_BYTES = 64 * 2**20  # of a refused body, read and dropped at most


class BodyTooLarge(HTTPException):
    """Raised while the body streams in. An HTTPException, because FastAPI passes those through
    its body parsing unchanged (any other error there becomes a 400), so the app's error handler
    answers it as a 413 envelope."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large(max_bytes))


def too_large(max_bytes: int) -> str:
    return f"request body exceeds {max_bytes} bytes"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _discard(receive)
            await self._reject(send)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _discard(receive)
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "Payload too large",
                "detail": too_large(self.max_bytes),
                "status_code": 413,
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _discard(receive: Receive) -> None:
    """Read the rest of a refused body (up to DISCARD_BYTES), so the client can read the 413."""
    dropped = 0
    while dropped <= DISCARD_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
