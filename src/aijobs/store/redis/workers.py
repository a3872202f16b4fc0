"""The JobStore methods a worker calls for the jobs it holds, mixed into the Redis store: claim,
renew, finish, fail, and the rescue of expired leases. Each is one script (scripts/*.lua); the
waiting for work is handover.py's."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from aijobs.jobs import Claim, Finish, Progress, Renewal, State
from aijobs.store.base import (
    RetryBackoff,
    clamp_fraction,
    compact_json,
    distinct_queues,
    error_text,
)
from aijobs.store.redis.codec import decode_claims, finish_args
from aijobs.store.redis.plumbing import RedisPlumbing
from aijobs.store.stats import FailureReason

RESCUE_BATCH = 500


class RedisWorkerCalls(RedisPlumbing):
    # Set by RedisStore.__init__.
    log_keep_chars: int
    retry_backoff: RetryBackoff
    max_stalls: int | None

    async def claim(
        self,
        queues: list[str],
        worker_id: str,
        lease_seconds: float,
        limit: int = 1,
        *,
        max_training: int | None = None,
    ) -> list[Claim]:
        queues = distinct_queues(queues)
        if not queues or limit < 0:
            return []
        # Not retried: a claim whose reply was lost holds its jobs until their lease expires,
        # and they are rescued then; a blind retry could not tell.
        reply = await self.run_script(
            "claim",
            worker_id,
            max(1, int(lease_seconds * 1000)),
            int(limit),
            secrets.token_hex(12),
            -1 if max_training is None else max(0, max_training),
            *queues,
        )
        return decode_claims(reply)

    async def renew(
        self,
        worker_id: str,
        leases: dict[str, tuple[str, Progress | None]],
        lease_seconds: float,
    ) -> dict[str, Renewal]:
        args: list[Any] = []
        for job_id, (token, progress) in leases.items():
            fraction = metrics = history = ""
            if progress is not None:
                if progress.fraction is not None:
                    fraction = repr(clamp_fraction(progress.fraction))
                if progress.metrics is not None:
                    metrics = compact_json(progress.metrics)
                if progress.history is not None:
                    history = compact_json(progress.history)
            started = "1" if progress is not None and progress.started else ""
            log_args: list[Any] = ["", 0, 0]
            if progress is not None and progress.log is not None:
                # With its length in characters, which Lua (bytes) cannot take from it.
                log_args = [progress.log, progress.log_at, len(progress.log)]
            args += [job_id, token, fraction, metrics, history, started, *log_args]
        reply = await self.run_script(
            "renew",
            worker_id,
            max(1, int(lease_seconds * 1000)),
            self.log_keep_chars,
            *args,
            retry=True,
        )
        return {job_id: Renewal(answer) for job_id, answer in zip(leases, reply, strict=True)}

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        args = finish_args(finishes)
        if not args:
            return []
        reply = await self.run_script("finish", *args, lane=self.lane("finish"))
        return [bool(ok) for ok in reply]

    async def fail(
        self,
        job_id: str,
        token: str,
        error: str,
        *,
        retry: bool = False,
        log: str | None = None,
        count_attempt: bool = True,
        reason: FailureReason = FailureReason.ERROR,
    ) -> bool:
        reply = await self.run_script(
            "fail",
            job_id,
            token,
            error_text(error),
            "1" if retry else "0",
            "0" if log is None else "1",
            log or "",
            "1" if count_attempt else "0",
            *self._backoff_args(),
            FailureReason(reason).value,
        )
        return bool(reply)

    def _backoff_args(self) -> list[int]:
        """The retry back-off's base and cap (ms), and a seed for its jitter."""
        backoff = self.retry_backoff
        return [backoff.base_ms, backoff.max_ms, secrets.randbelow(2**31)]

    async def rescue_expired(self) -> list[tuple[str, State]]:
        stalls = "" if self.max_stalls is None else int(self.max_stalls)
        rescued: list[tuple[str, State]] = []
        while True:
            reply = await self.run_script(
                "rescue", stalls, RESCUE_BATCH, *self._backoff_args(), retry=True
            )
            rescued += [(reply[i], State(reply[i + 1])) for i in range(0, len(reply), 2)]
            if len(reply) < 2 * RESCUE_BATCH:
                return rescued
