"""Idle workers wait on the server, and a job submitted meanwhile is handed to one of them.

An idle worker registers as a waiter of its queues and blocks on ``BLPOP`` of its own inbox;
when work is ready as it begins to wait, the same script claims that for it instead.
A job submitted while nothing is queued ahead of it is claimed for a waiter by the submit
script itself and handed over in that inbox: the worker starts it with no claim of its own (one
round trip less on the latency path). Other work (a retry, a rescue, a claim that left work
behind) sends one waiter a hint to claim, so wake-ups chain from one idle worker to the next.
The registration expires just before the worker's pop ends, so nothing is handed to a worker
that no longer listens; a stopping worker's untaken hand-overs go back to pending, and so does
one its cancelled wait popped but never returned.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TYPE_CHECKING

from aijobs.jobs import Claim, Progress, Renewal, Waiter
from aijobs.store.base import distinct_queues
from aijobs.store.redis.codec import decode_claims, decode_job

if TYPE_CHECKING:
    from aijobs.store.redis.lane import Lane
    from aijobs.store.redis.store import RedisStore

WAIT_MARGIN_MS = 50  # a waiter's registration ends this long before its blocking pop does


async def wait_for_work(
    store: RedisStore, queues: list[str], timeout: float, waiter: Waiter | None = None
) -> list[Claim]:
    """JobStore.wait_for_work: a claim handed over to `waiter` while it waited, or a hint."""
    queues = distinct_queues(queues)
    # BLPOP blocks on the server; keep it inside the socket timeout.
    block = min(timeout, max(0.05, store.socket_timeout - 1.0))
    if not queues or block <= 0:
        return []
    # Without a waiter: hints of any work, and no hand-over (lease 0).
    worker_id = waiter.worker_id if waiter else f"anonymous:{secrets.token_hex(8)}"
    lease_ms = max(1, int(waiter.lease_seconds * 1000)) if waiter else 0
    max_training = max(0, waiter.max_training) if waiter else 1
    room = max(1, waiter.room) if waiter else 0
    serial = secrets.token_hex(6)
    ttl_ms = max(1, int(block * 1000) - WAIT_MARGIN_MS)
    waiting = f"{serial} {max_training} {lease_ms}"
    # A worker waits again after each batch: its wait and pop go over a connection of its own.
    lane = store.lane(f"inbox {worker_id}") if waiter else None
    # Not retried: with work ready, the wait claims it, and a claim is not repeated blindly.
    reply = await store.run_script(
        "wait", worker_id, waiting, ttl_ms, room, secrets.token_hex(12), *queues, lane=lane
    )
    if reply == 0:
        return []  # work is ready: claim it (a waiter without hand-overs)
    if reply != 1:  # work was ready: claimed for the waiter at once
        return decode_claims(reply)
    try:
        return await _take(store, worker_id, serial, block, waiter, lane)
    except asyncio.CancelledError:
        # The worker is stopping: hand it nothing more, and hand back what came meanwhile,
        # the claim it popped included (a cancel can land once Redis has popped it, its reply
        # unread): a cancelled wait returns nothing, so nothing it was handed may stay leased.
        await asyncio.shield(store.run_script("stop_waiting", worker_id, retry=True))
        raise


async def _take(
    store: RedisStore,
    worker_id: str,
    serial: str,
    block: float,
    waiter: Waiter | None,
    lane: Lane | None,
) -> list[Claim]:
    """Pop the worker's inbox: the claim handed over to it, if any and still its own."""
    inbox = store.k("inbox", worker_id)
    reply = await store.call(
        lambda r: r.execute_command("BLPOP", inbox, block), retry=False, lane=lane
    )
    if reply is None or reply[1] == "hint" or waiter is None:
        return []
    handed_in, token, fields = json.loads(reply[1])
    claim = Claim(job=decode_job([None if v is False else v for v in fields]), token=token)
    if handed_in != serial:
        # Handed over in an earlier wait that ended without taking it (a lost connection):
        # still ours only if its lease is.
        leases: dict[str, tuple[str, Progress | None]] = {claim.job.id: (token, None)}
        renewed = await store.renew(worker_id, leases, waiter.lease_seconds)
        if renewed[claim.job.id] is not Renewal.OK:
            return []
    return [claim]
