"""Job-end announcements: one Pub/Sub subscription per process wakes every local waiter.

A client that waits for a job (``RedisStore.wait_terminal``) marks the job watched; the script
that ends a watched job publishes its fields on ``P:done``. One subscribed connection per
process hears every announcement and hands the fields to the local waiters of that job, so a
thousand long-polls hold one connection, not a thousand blocked ones. An announcement can be
missed only while the subscription is down; on reconnecting every waiter is woken (with None)
to look again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger("aijobs.store.redis")

Fields = list[str | None]  # a job's fields, in JOB_FIELDS order

POLL_SECONDS = 1.0  # get_message timeout: well inside the socket timeout
RECONNECT_SECONDS = 0.5


class Announcements:
    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel
        self.waiters: dict[str, set[asyncio.Future[Fields | None]]] = {}
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def expect(self, job_id: str) -> asyncio.Future[Fields | None]:
        """Resolved with the job's fields when it ends, or None: look again (a reconnect)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen())
        future: asyncio.Future[Fields | None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(job_id, set()).add(future)
        return future

    def forget(self, job_id: str, future: asyncio.Future[Fields | None]) -> None:
        waiting = self.waiters.get(job_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self.waiters[job_id]

    async def ready(self, timeout: float) -> None:
        """Until subscribed (or `timeout`): an announcement made before then would be missed."""
        if self.subscribed.is_set():
            return  # wait_for would wrap the wait in a task, a loop turn per long-poll
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._wake(list(self.waiters))

    def _wake(self, job_ids: list[str], fields: Fields | None = None) -> None:
        for job_id in job_ids:
            for future in self.waiters.get(job_id, ()):
                if not future.done():
                    future.set_result(fields)

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                self._wake(list(self.waiters))  # what ended while we were away is not announced
                while True:
                    message: dict[str, Any] | None = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_SECONDS
                    )
                    if message is not None and message["type"] == "message":
                        # Lua's cjson writes a missing field (nil in HMGET) as false.
                        fields = [None if v is False else v for v in json.loads(message["data"])]
                        self._wake([str(fields[0])], fields)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.subscribed.is_set():
                    log.warning("job-end subscription lost (%s); reconnecting", exc)
                self.subscribed.clear()
                self._wake(list(self.waiters))
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
