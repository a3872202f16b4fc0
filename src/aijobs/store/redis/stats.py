"""The Redis store's metrics (store/stats.py) and queue positions, mixed into the store.

The counters are the hash ``P:stats``, kept by the scripts that make each transition (the
helpers count_start, count_end and count_failure in scripts/_lib.lua): summed inside the
script that already runs and written once at its end with the counts (flush_counts), no round
trip of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

from aijobs.store.base import job_not_found
from aijobs.store.redis.plumbing import RedisPlumbing
from aijobs.store.stats import JobStats, QueuePosition


class RedisStats(RedisPlumbing):
    async def job_stats(self) -> JobStats:
        fields: dict[str, str] = await self.read_hash("stats")
        rows = []
        for field, value in fields.items():
            metric, job_type, label, queue = field.split("|", 3)
            rows.append((metric, job_type, queue, label, int(value)))
        return JobStats.from_rows(rows)

    async def queue_position(self, job_id: str) -> QueuePosition | None:
        reply = await self.run_script("queue_position", job_id, retry=True)
        if reply[0] == "missing":
            raise job_not_found(job_id)
        if reply[0] == "claimed":
            return QueuePosition(claimed_by=reply[1] or None)
        if reply[0] != "pending":
            return None
        _, ahead, backing_off, left_ms = reply
        retry_in = int(left_ms) / 1000.0 if left_ms else None
        return QueuePosition(int(ahead), int(backing_off), retry_in)

    async def oldest_waiting(self, queues: Sequence[str]) -> dict[str, float]:
        if not queues:
            return {}
        reply = await self.run_script("oldest_waiting", *dict.fromkeys(queues), retry=True)
        return {reply[i]: int(reply[i + 1]) / 1000.0 for i in range(0, len(reply), 2)}
