"""The JobStore contract: every backend implements it and passes tests/contract.

Every method is one atomic transition. Writes by a worker carry the fencing token of its claim;
a write with a stale token (lease lost, job cancelled, job rescued) changes nothing.

StoreBase and the functions below it are what every backend does the same way in front of its
own storage, so that the stores agree on it by construction.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aijobs import errors
from aijobs.apikeys import ApiKey
from aijobs.jobs import (
    Claim,
    Finish,
    Job,
    JobType,
    ModelRecord,
    NewJob,
    PendingLimits,
    Progress,
    RateDecision,
    Renewal,
    State,
    Waiter,
    WorkerInfo,
)
from aijobs.logsafe import encodable
from aijobs.store.stats import FailureReason, JobStats, QueuePosition

if TYPE_CHECKING:
    from aijobs.settings import Settings


class JobStore(Protocol):
    kind: str  # "sqlite" or "redis": what /health/redis reports

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def health(self) -> dict[str, Any]:
        """{"healthy": bool, "store": kind, ...backend details}. Never raises."""

    # -- clients (API) -------------------------------------------------------------------------
    async def submit(
        self,
        job: NewJob,
        idempotency_key: str | None = None,
        limits: PendingLimits | None = None,
        require_model: bool = False,
    ) -> Job:
        """Store a new pending job durably; the same idempotency_key returns the first job, or
        raises errors.IdempotencyKeyReused when the job asked for differs (first_submission).

        With `limits`, a new job past one of them is refused in the same atomic step
        (errors.QueueFull, naming the limit); an idempotent retry still gets its first job.
        With `require_model`, a new job whose model_id names no stored model is refused in that
        step too (errors.ModelNotFound): a model deleted since the caller read its record takes
        no new job.
        """

    async def take_tokens(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        """Count one request against `key` in its fixed window of `window_seconds`, unless
        `limit` requests were already counted there: one atomic step, shared by every client
        of the store, so that no two API processes let a request over the limit together."""

    async def get(self, job_id: str) -> Job:
        """Raise errors.JobNotFound when absent."""

    async def list_jobs(
        self,
        state: State | None = None,
        limit: int = 100,
        offset: int = 0,
        principal: str | None = None,
    ) -> tuple[list[Job], int]:
        """Newest first; returns (page, total matching). With `principal`, only the jobs it
        submitted (filtered by an index, before paging). Rows only: each job's ROW_FIELDS,
        never its payload, description, metrics, history, result or log (left empty)."""

    async def cancel(self, job_id: str, reason: str = "Job cancelled by user") -> Job:
        """Pending or running -> cancelled at once (a running job's worker learns on renew).

        Raise errors.JobNotFound, or errors.NotCancellable for a terminal job.
        """

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        """{queue: {"pending": n, "running": m}} for queues with active jobs."""

    async def wait_terminal(self, job_id: str, timeout: float) -> Job:
        """The job (its log may be left out) as soon as it is completed, failed or cancelled, or
        as it is after `timeout` seconds. Woken by the job's end (Redis: Pub/Sub; SQLite: the file's
        change counter), not by reading the job over and over. Raise errors.JobNotFound.
        """

    async def recent_durations(
        self, job_type: JobType, model_type: str | None, queue: str, limit: int = 20
    ) -> list[float]:
        """Run times (s) of the latest completed jobs of that kind, newest first."""

    async def job_stats(self) -> JobStats:
        """The counters and histograms GET /metrics exposes (store/stats.py), as every client of
        the store reads them: kept in the steps that change the jobs, never recounted."""

    async def queue_position(self, job_id: str) -> QueuePosition | None:
        """Where a job that shows pending stands in its queue: the claimable jobs ahead of it
        (priority desc, then FIFO: the order of claims), the retried ones ahead waiting out
        their back-off, its own back-off, or the worker holding it; None for any other job.
        Raise errors.JobNotFound."""

    async def oldest_waiting(self, queues: Sequence[str]) -> dict[str, float]:
        """For each of `queues` that has claimable jobs: when the one waiting longest was
        submitted (epoch seconds), whatever its priority. Jobs waiting out a retry's back-off
        and jobs a worker holds already are not waiting for a worker, and not counted. Cheap on
        any queue length: the oldest job of each priority heads its band of the claim order."""

    # -- workers -------------------------------------------------------------------------------
    async def claim(
        self,
        queues: list[str],
        worker_id: str,
        lease_seconds: float,
        limit: int = 1,
        *,
        max_training: int | None = None,
    ) -> list[Claim]:
        """Atomically take up to `limit` pending jobs (priority desc, then FIFO) with a lease.

        With `max_training`, skip the training jobs past that many: they keep their place, and
        the inference jobs behind them are taken.
        A claim after `wait_for_work` returned passes its hint on to other idle workers when
        work is left, even with `limit` 0 (a worker that took the hint but has no room).
        """

    async def wait_for_work(
        self, queues: list[str], timeout: float, waiter: Waiter | None = None
    ) -> list[Claim]:
        """Return soon after new work may be ready on `queues`, or after `timeout` seconds.

        Mostly a hint, not a promise: it may return early, and the caller claims to find out.
        But with a `waiter`, a store may hand it work, claimed for it (leased and fenced like
        any claim) and returned here, so that the worker starts it without a claim of its own:
        a job submitted while it waits, or, when work is ready as the wait begins, up to its
        room of it. Then there is nothing else to claim.
        """

    async def renew(
        self,
        worker_id: str,
        leases: dict[str, tuple[str, Progress | None]],
        lease_seconds: float,
    ) -> dict[str, Renewal]:
        """Extend the leases {job_id: (token, progress)}; progress lands only with a valid token."""

    async def finish(
        self,
        job_id: str,
        token: str,
        result: dict[str, Any],
        *,
        log: str | None = None,
        model: ModelRecord | None = None,
    ) -> bool:
        """running -> completed, registering `model` in the same transaction.

        False (and no change at all) when the token is stale: the caller discards its output.
        """

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        """finish() for several jobs in one round trip, each on its own: one answer per job."""

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
        """running -> failed, or -> pending again when retry and attempts are left, claimable
        after the store's RetryBackoff. With retry and not count_attempt (a run stopped for the
        worker's sake, such as its shutdown), the job goes back to pending at once, its attempt
        undone. `error` is stored as error_text(). A counted attempt is counted as a failure
        for `reason` (job_stats); one not counted is not a failure."""

    async def rescue_expired(self) -> list[tuple[str, State]]:
        """Expired leases: back to pending (claimable after the store's RetryBackoff), or
        failed once attempts are spent."""

    async def register_worker(self, info: WorkerInfo) -> None:
        """Insert or refresh a worker's heartbeat record."""

    async def unregister_worker(self, worker_id: str) -> None: ...

    async def live_workers(self, ttl_seconds: float) -> list[WorkerInfo]:
        """Workers seen within ttl_seconds."""

    # -- models --------------------------------------------------------------------------------
    async def add_model(self, model: ModelRecord) -> None: ...

    async def get_model(self, model_id: str) -> ModelRecord:
        """Raise errors.ModelNotFound when absent."""

    async def list_models(
        self, limit: int = 100, offset: int = 0, principal: str | None = None
    ) -> tuple[list[ModelRecord], int]:
        """Newest first; returns (page, total). With `principal`, only the models of its
        training jobs."""

    async def delete_model(self, model_id: str) -> ModelRecord:
        """Forget a model and return its record; raise errors.ModelNotFound when absent."""

    async def trim_models(self) -> list[ModelRecord]:
        """Forget up to MODEL_TRIM_BATCH models neither trained nor named by a submitted
        inference job within the store's `retain_models_seconds` (0: keep every model), and
        return their records (the caller deletes their files). At most one pass per
        MODEL_TRIM_INTERVAL per client: the others return [] at once."""

    # -- API keys (shared by every API process; a revoke holds at the next request) ------------
    async def create_key(self, key: ApiKey) -> None:
        """Record a key; raise errors.KeyNameTaken when another key has its name."""

    async def list_keys(self) -> list[ApiKey]:
        """Every key, by name."""

    async def revoke_key(self, name: str) -> bool:
        """Forget the key of that name; False when there is none."""

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose SHA-256 digest this is, or None."""


MODEL_TRIM_INTERVAL = 30.0  # seconds between passes of trim_models, per client
MODEL_TRIM_BATCH = 100  # models forgotten per pass at most


class StoreBase:
    """The JobStore methods every backend shares: `finish` is one `finish_many`, and
    `trim_models` a throttled `forget_unused_models`."""

    retain_models_ms = 0  # a model unused this long is forgotten (0: never)
    _next_model_trim = 0.0  # monotonic time of the next trim_models pass

    async def forget_unused_models(self, unused_ms: int, limit: int) -> list[ModelRecord]:
        """Forget up to `limit` models neither trained nor used (an inference job for it
        submitted) for `unused_ms` milliseconds, the longest unused first; their records."""
        raise NotImplementedError

    async def trim_models(self) -> list[ModelRecord]:
        if not self.retain_models_ms or time.monotonic() < self._next_model_trim:
            return []
        self._next_model_trim = time.monotonic() + MODEL_TRIM_INTERVAL
        return await self.forget_unused_models(self.retain_models_ms, MODEL_TRIM_BATCH)

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        raise NotImplementedError

    async def finish(
        self,
        job_id: str,
        token: str,
        result: dict[str, Any],
        *,
        log: str | None = None,
        model: ModelRecord | None = None,
    ) -> bool:
        (ok,) = await self.finish_many([Finish(job_id, token, result, log, model)])
        return ok


@dataclass(frozen=True)
class RetryBackoff:
    """How long a job sent back to pending by a counted failure (a crash, a lost lease, an
    outage) waits before a claim can take it: base * 2^(attempt - 1), capped, then jittered
    down to as little as half, so that jobs that failed together do not all come back together.
    A job that fails at once on every run then cannot spend its attempts in a burst. Each store
    computes it in its own language (SQL, Lua) from these milliseconds; base 0: no wait."""

    base_seconds: float = 0.0
    max_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryBackoff:
        return cls(settings.retry_backoff_seconds, settings.retry_backoff_max_seconds)

    @property
    def base_ms(self) -> int:
        return max(0, int(self.base_seconds * 1000))

    @property
    def max_ms(self) -> int:
        return max(0, int(self.max_seconds * 1000))


def compact_json(value: Any) -> str:
    """JSON as the stores keep it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def _submission(job: Job | NewJob) -> str:
    """What a client asked for, as comparable text: the rest of a job (its queue, model type,
    attempts) the API derives from these or from its settings."""
    asked = [JobType(job.job_type).value, job.payload, job.priority, job.timeout_seconds]
    return json.dumps(asked, sort_keys=True, separators=(",", ":"))


def first_submission(first: Job, retry: NewJob, idempotency_key: str) -> Job:
    """The job an idempotency key already names, when `retry` asks for the same thing again.

    A key sent with a different request is refused rather than answered with a job the client
    did not ask for.
    """
    if _submission(first) != _submission(retry):
        raise errors.IdempotencyKeyReused(
            f"Idempotency-Key {idempotency_key!r} was already used for job {first.id} with a "
            "different request; send a new key for a new job"
        )
    return first


def distinct_queues(queues: Sequence[str]) -> list[str]:
    """The queues a worker listens on, each once, in the worker's order."""
    return list(dict.fromkeys(queues))


def clamp_fraction(fraction: float) -> float:
    """A reported progress fraction, within [0, 1]."""
    return min(1.0, max(0.0, float(fraction)))


ERROR_TEXT_LIMIT = 8192  # characters of a job's error kept; a traceback's head says enough
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and newline


def error_text(text: str) -> str:
    """A job's error as every store records it: text that encodes as UTF-8 (a lone surrogate
    echoed from a user's input is written as its escape, so the error still names it), no
    control characters but tab and newline, at most ERROR_TEXT_LIMIT characters."""
    text = _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m[0]):02x}", encodable(text))
    if len(text) > ERROR_TEXT_LIMIT:
        text = f"{text[:ERROR_TEXT_LIMIT]}... ({len(text) - ERROR_TEXT_LIMIT} characters more)"
    return text


def job_not_found(job_id: str) -> errors.JobNotFound:
    return errors.JobNotFound(f"job {job_id} not found")


def not_cancellable(job_id: str, state: State | str) -> errors.NotCancellable:
    return errors.NotCancellable(f"job {job_id} is already {State(state).value}")


def key_name_taken(name: str) -> errors.KeyNameTaken:
    return errors.KeyNameTaken(f"an API key named {name!r} exists already; revoke it first")


def queue_full(job: NewJob, which: str, limit: int) -> errors.QueueFull:
    """The refusal of a submission past one of PendingLimits (`which` names the field)."""
    holder = f"queue {job.queue!r}" if which == "per_queue" else f"principal {job.principal!r}"
    return errors.QueueFull(
        f"{holder} already holds {limit} pending jobs, the limit "
        f"(AIJOBS_MAX_PENDING_{which.upper()}={limit}); retry once some have started"
    )


def model_not_found(model_id: str) -> errors.ModelNotFound:
    return errors.ModelNotFound(f"model {model_id} not found")
