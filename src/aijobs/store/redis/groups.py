"""Group submission: the submits that queue up in one process while one is in flight go to
Redis together, one pipeline of submit scripts, one round trip.

Each submit is still its own FCALL of the submit function (scripts/submit.lua): atomic, with
its own idempotency and limits checks, so one refused job never touches another. No timer: a
lone submit is sent at once, and the submits that arrive while it is in flight are the next
group. A lone submit goes over the store's submit lane, one connection kept for them: lending a
pooled connection for each was a fifth of the producer's CPU per submit.

Crash safety is the single submit's: a job exists once its script ran (with AOF, as durable as
the server's appendfsync), and nobody hears of it before the reply. Every job id is chosen
before the call, so a submit whose reply was lost (the pipeline failed, or one reply in it is an
error) is sent again on its own, through RedisStore.run_script, with the single submit's error
handling: the script finds the job the first try made, or makes it now.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aijobs.store.redis.store import RedisStore


class SubmitGroups:
    """One store's submits in flight, and those waiting for the next round trip."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._waiting: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._lone_in_flight = False  # a caller sending its own submit, outside any group

    async def submit(self, args: list[Any]) -> Any:
        """The reply of the submit script to `args`, sent alone or with others."""
        if not self._lone_in_flight and self._sender is None:
            # Nothing in flight: this caller sends its own, no task hop; those arriving
            # meanwhile queue up and go as the next group when its reply is in.
            self._lone_in_flight = True
            try:
                return await self._send_alone(args)
            finally:
                self._lone_in_flight = False
                if self._waiting and self._sender is None:
                    self._sender = asyncio.create_task(self._send_groups())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((args, future))
        if self._sender is None and not self._lone_in_flight:
            self._sender = asyncio.create_task(self._send_groups())
        return await future

    async def _send_groups(self) -> None:
        group: list[tuple[list[Any], asyncio.Future[Any]]] = []
        try:
            while self._waiting:
                group = [(a, f) for a, f in self._waiting if not f.done()]
                self._waiting = []
                if group:
                    await self._send(group)
        finally:
            self._sender = None
            for _, future in group + self._waiting:  # only if this task itself was cancelled
                future.cancel()
            self._waiting = []

    async def _send(self, group: list[tuple[list[Any], asyncio.Future[Any]]]) -> None:
        replies: list[Any] = [None] * len(group)
        if len(group) > 1:
            with contextlib.suppress(Exception):  # each is sent again alone below
                replies = await self._pipeline([args for args, _ in group])
        for (args, future), reply in zip(group, replies, strict=True):
            if future.done():
                continue
            if reply is None or isinstance(reply, Exception):
                try:
                    reply = await self._send_alone(args)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                    continue
            if not future.done():
                future.set_result(reply)

    async def _send_alone(self, args: list[Any]) -> Any:
        store = self.store
        return await store.run_script("submit", *args, retry=True, lane=store.lane("submit"))

    async def _pipeline(self, argvs: list[list[Any]]) -> list[Any]:
        async with self.store.client().pipeline(transaction=False) as pipe:
            for args in argvs:
                self.store.queue_script(pipe, "submit", *args)
            return list(await pipe.execute(raise_on_error=False))
