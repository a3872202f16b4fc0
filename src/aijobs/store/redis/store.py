"""The Redis job store: any number of API processes and workers, on any number of hosts.

Design:

* Every transition is one Lua script, run with EVALSHA: one round trip, atomic. The scripts live
  in ``scripts/``; ``_lib.lua`` (prepended to each) documents every key and the invariant that
  the chaos tests check (``check.py``).
* Claim and lease record are one step; leases, timestamps and rescue use the server's clock
  (``TIME``), so workers' clocks do not matter. Every write by a worker carries its claim's
  token and changes nothing when the token is stale.
* Reads are indexed: listing is a rank range of a sorted set (``all`` or ``state:<s>``), totals
  are ZCARDs, queue depths one small hash, rescue a range of the ``leases`` index by deadline.
* An idle worker waits on the server, and a job submitted meanwhile is claimed for it by the
  submit script and handed over (``handover.py``).
* Finished jobs are kept (``retain_jobs``/``retain_seconds``), trimmed a few at a time by the
  scripts that finish jobs, oldest first. Models unused for ``retain_models_seconds`` are
  forgotten in batches by ``trim_models`` (the API's upkeep).
* Every key starts with the hash tag ``{prefix}``: one deployment's keys share a hash slot (what
  atomic scripts over the job, its indexes and the counts need in Cluster); deployments with
  different prefixes share a Redis, or spread over a cluster.

Failure handling: connection errors and Redis's "cannot serve now" replies (LOADING, MISCONF,
OOM, READONLY...) become ``errors.StoreUnavailable`` (503 at the API). redis-py's own retries are
off: a blind retry of a claim or a finish whose reply was lost is not safe. Calls that are safe to
repeat (reads, renew, rescue, and submit, whose job id is chosen here before the call) are retried
once on a fresh connection. The pool reconnects by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aijobs import errors
from aijobs.jobs import (
    JOB_FIELDS,
    LOG_KEEP_CHARS,
    ROW_FIELDS,
    Claim,
    Job,
    JobType,
    NewJob,
    PendingLimits,
    RateDecision,
    State,
    Waiter,
)
from aijobs.store.base import (
    RetryBackoff,
    StoreBase,
    first_submission,
    job_not_found,
    model_not_found,
    not_cancellable,
    queue_full,
)
from aijobs.store.redis import handover
from aijobs.store.redis.announce import Announcements
from aijobs.store.redis.catalog import RedisCatalog
from aijobs.store.redis.codec import (
    LIBRARY_SOURCE,
    decode_job,
    durations_key,
    function_name,
    submit_args,
    submitted_job,
)
from aijobs.store.redis.groups import SubmitGroups
from aijobs.store.redis.lane import Lane
from aijobs.store.redis.packing import pack_with_hiredis
from aijobs.store.redis.server import check_server, health_report
from aijobs.store.redis.stats import RedisStats
from aijobs.store.redis.workers import RedisWorkerCalls

if TYPE_CHECKING:
    from aijobs.settings import Settings

log = logging.getLogger("aijobs.store.redis")

RETRY_PAUSE = 0.05
WATCH_RECHECK_SECONDS = 5.0  # a waiter looks again this often, announcement or not
FUNCTION_NOT_FOUND = "Function not found"  # FCALL's error when Redis lacks our library

# Replies meaning "Redis cannot serve this now", not "this request is wrong" (LOADING is a
# ConnectionError in redis-py already): by class, and by the error codes it leaves in the text.
TRANSIENT_ERRORS = (rex.OutOfMemoryError, rex.ReadOnlyError, rex.TryAgainError)
TRANSIENT_CODES = ("MISCONF", "MASTERDOWN", "NOREPLICAS", "BUSY", "OOM", "READONLY")


def _honour_cancel() -> None:
    """Raise CancelledError if this task was cancelled during a Redis call that did not raise
    it: redis-py (8.x) can swallow a cancel while it acquires a connection, and would then run
    the call to its end (a blocking pop for its whole timeout), or report a lost connection."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisStore(RedisCatalog, RedisStats, RedisWorkerCalls, StoreBase):
    """JobStore over Redis ≥ 7.0 (see the module docstring for the design)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "aijobs",
        pool_size: int = 50,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        retain_jobs: int = 100_000,
        retain_seconds: float = 30 * 86400.0,
        retain_models_seconds: float = 0.0,
        max_stalls: int | None = None,
        retry_backoff: RetryBackoff | None = None,
        log_keep_chars: int = LOG_KEEP_CHARS,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"invalid Redis key prefix {prefix!r}: non-empty, without braces")
        self.url = url
        self.prefix = prefix
        self.pool_size = pool_size
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.retain_jobs = max(0, retain_jobs)
        self.retain_seconds = max(0.0, retain_seconds)
        self.retain_models_ms = int(max(0.0, retain_models_seconds) * 1000)
        self.max_stalls = max_stalls
        self.retry_backoff = retry_backoff or RetryBackoff()
        self.log_keep_chars = max(1, log_keep_chars)
        self.key = "{" + prefix + "}"  # every key starts with this hash tag
        self._client: aioredis.Redis | None = None
        # Connections of the pool kept for callers that go one round trip at a time (lane.py):
        # this process's submits (groups.py), a worker's wait and inbox pop, its finishes.
        # No pool lending per call: a third of an asyncio round trip's CPU.
        self._lanes: dict[str, Lane] = {}
        self._announcements: Announcements | None = None
        self._submits = SubmitGroups(self)
        self.server: dict[str, Any] = {}  # what open() learned about the server

    @classmethod
    def from_settings(cls, url: str, settings: Settings, **options: Any) -> RedisStore:
        """Build from an aijobs Settings (explicit options win)."""
        defaults: dict[str, Any] = {
            "prefix": settings.redis_prefix,
            "pool_size": settings.redis_pool_size,
            "socket_timeout": settings.redis_socket_timeout,
            "connect_timeout": settings.redis_connect_timeout,
            "retain_jobs": settings.retain_jobs,
            "retain_seconds": settings.retain_seconds,
            "retain_models_seconds": settings.retain_models_seconds,
            "retry_backoff": RetryBackoff.from_settings(settings),
            "log_keep_chars": settings.log_keep_chars,
        }
        return cls(url, **{**defaults, **options})

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.pool_size,
            timeout=self.connect_timeout,  # waiting for a free connection
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(NoBackoff(), 0),  # we decide what is safe to retry
            # RESP2: with RESP3, redis-py (8.x) skips its check, when lending a pooled
            # connection, that the server has not closed it (a Redis restart): the next command
            # on it would fail, and a claim or a finish must not be retried blindly.
            protocol=2,
            decode_responses=True,
            client_name=f"aijobs:{self.prefix}",
        )
        pack_with_hiredis(pool)
        client = aioredis.Redis.from_pool(pool)
        try:
            self.server = await check_server(client, self.url)
        except BaseException:
            await client.aclose()
            raise
        # Loaded at once, for pipelines of our functions; again by run_script when Redis lost
        # it. A server that refuses writes now (OOM, a replica) may still answer reads.
        with contextlib.suppress(rex.ResponseError):
            await client.function_load(LIBRARY_SOURCE, replace=True)
        self._client = client
        self._announcements = Announcements(client, self.k("done"))

    async def close(self) -> None:
        client, self._client = self._client, None
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            await lane.aclose()  # its connection back to the pool, closed with it below
        announcements, self._announcements = self._announcements, None
        if announcements is not None:
            await announcements.close()
        if client is not None:
            await client.aclose()

    # -- plumbing ------------------------------------------------------------------------------
    def client(self) -> aioredis.Redis:
        """The open client (for the store's own tools: the checker, bulk loads)."""
        if self._client is None:
            raise errors.StoreUnavailable("the Redis store is not open")
        return self._client

    async def call(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        *,
        retry: bool,
        lane: Lane | None = None,
    ) -> Any:
        """Run one Redis call; unavailability becomes StoreUnavailable.

        `fn` is given the client (or `lane`). `retry`: the call may run twice without harm, so a
        failure that may be a stale pooled connection is retried once on a fresh one. `lane`: a
        dedicated connection to run it on, instead of one lent by the pool.
        """
        client = self.client() if lane is None else lane
        for attempt in (1, 2):
            try:
                result = await fn(client)
            except (rex.ConnectionError, rex.TimeoutError) as exc:
                _honour_cancel()
                if retry and attempt == 1:
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                raise errors.StoreUnavailable(
                    f"Redis is unavailable ({type(exc).__name__}: {exc})"
                ) from exc
            except rex.ResponseError as exc:
                if isinstance(exc, TRANSIENT_ERRORS) or str(exc).startswith(TRANSIENT_CODES):
                    raise errors.StoreUnavailable(f"Redis cannot serve this now: {exc}") from exc
                raise
            _honour_cancel()
            return result
        raise AssertionError("unreachable")

    async def run_script(
        self, name: str, *args: Any, retry: bool = False, lane: Lane | None = None
    ) -> Any:
        """Run one of our scripts: one FCALL of its function in our library, which is loaded
        again when Redis lacks it (restarted without persistence, or FUNCTION FLUSH)."""
        function, argv = function_name(name), self.script_argv(args)

        async def fcall(r: aioredis.Redis | Lane) -> Any:
            try:
                return await r.fcall(function, 1, self.key, *argv)
            except rex.ResponseError as exc:
                if str(exc) != FUNCTION_NOT_FOUND:
                    raise
            await r.function_load(LIBRARY_SOURCE, replace=True)
            return await r.fcall(function, 1, self.key, *argv)

        return await self.call(fcall, retry=retry, lane=lane)

    def lane(self, caller: str) -> Lane:
        """The connection kept for `caller` in this process, one of its calls at a time."""
        lane = self._lanes.get(caller)
        if lane is None:
            lane = self._lanes[caller] = Lane(self.client().connection_pool)
        return lane

    def script_argv(self, args: Sequence[Any]) -> list[Any]:
        """The full ARGV of one of our scripts called with `args`: the retention limits first."""
        return [self.retain_jobs, int(self.retain_seconds * 1000), *args]

    def queue_script(self, pipe: Any, name: str, *args: Any) -> None:
        """Queue one of our scripts on a redis-py pipeline (bulk loads, benchmarks)."""
        pipe.fcall(function_name(name), 1, self.key, *self.script_argv(args))

    def k(self, *parts: str) -> str:
        return ":".join((self.key, *parts))

    async def read_hash(self, name: str, field: str | None = None) -> Any:
        """HGETALL of hash P:`name`, or HGET of one `field` of it."""
        key = self.k(name)
        if field is None:
            return await self.call(lambda r: r.hgetall(key), retry=True)
        return await self.call(lambda r: r.hget(key, field), retry=True)

    # -- clients -------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        return await health_report(
            self._client,
            url=self.url,
            prefix=self.prefix,
            all_jobs_key=self.k("all"),
            checked=self.server,
        )

    async def submit(
        self,
        job: NewJob,
        idempotency_key: str | None = None,
        limits: PendingLimits | None = None,
        require_model: bool = False,
    ) -> Job:
        # The id is chosen here, so that a retry of a call whose reply was lost finds its job.
        args = submit_args(job, idempotency_key, limits, require_model)
        # Concurrent submits of this process share one round trip (groups.py).
        reply = await self._submits.submit(args)
        if reply[0] == "limit":
            raise queue_full(job, str(reply[1]), int(reply[2]))
        if reply[0] == "no_model":
            raise model_not_found(str(job.model_id))
        stored = submitted_job(job, args, reply[1]) if reply[0] == "new" else decode_job(reply)
        if idempotency_key:  # the key's first job, or this very call's when the key was new
            return first_submission(stored, job, idempotency_key)
        return stored

    async def take_tokens(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        window_ms = max(1, int(window_seconds * 1000))
        # Not retried: a count whose reply was lost would be counted twice.
        allowed, remaining, reset_ms = await self.run_script("take_tokens", key, limit, window_ms)
        return RateDecision(bool(allowed), limit, int(remaining), int(reset_ms) / 1000.0)

    async def get(self, job_id: str) -> Job:
        key = self.k("job", job_id)
        row: dict[str, str] = await self.call(lambda r: r.hgetall(key), retry=True)
        if not row:
            raise job_not_found(job_id)
        return decode_job([row.get(name) for name in JOB_FIELDS], log_text=row.get("log"))

    async def wait_terminal(self, job_id: str, timeout: float) -> Job:
        announcements = self._announcements
        if announcements is None:
            raise errors.StoreUnavailable("the Redis store is not open")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            ended = announcements.expect(job_id)  # before the watch: no announcement slips by
            try:
                left = deadline - loop.time()
                await announcements.ready(min(max(left, 0.0), self.connect_timeout))
                ttl_ms = int((max(left, 0.0) + self.socket_timeout) * 1000)
                reply = await self.run_script("watch", job_id, ttl_ms, retry=True)
                if reply is None:
                    raise job_not_found(job_id)
                _state, *fields = reply
                left = deadline - loop.time()
                if fields or left <= 0:
                    return decode_job(fields) if fields else await self.get(job_id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, WATCH_RECHECK_SECONDS)):
                        if announced := await ended:  # no task to wrap it, unlike wait_for
                            return decode_job(announced)
            finally:
                announcements.forget(job_id, ended)

    async def list_jobs(
        self,
        state: State | None = None,
        limit: int = 100,
        offset: int = 0,
        principal: str | None = None,
    ) -> tuple[list[Job], int]:
        limit, offset = max(0, limit), max(0, offset)
        which = "" if state is None else State(state).value
        mine = "" if principal is None else principal
        total, *rows = await self.run_script("list", which, offset, limit, mine, retry=True)
        return [decode_job(r, fields=ROW_FIELDS) for r in rows], int(total)

    async def cancel(self, job_id: str, reason: str = "Job cancelled by user") -> Job:
        reply = await self.run_script("cancel", job_id, reason)
        if reply[0] == "missing":
            raise job_not_found(job_id)
        if reply[0] == "terminal":
            raise not_cancellable(job_id, reply[1])
        return decode_job(reply[1], log_text=reply[2])

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        key = self.k("counts")
        counts: dict[str, str] = await self.call(lambda r: r.hgetall(key), retry=True)
        depths: dict[str, dict[str, int]] = {}
        for field, n in counts.items():
            state, queue = field.split(":", 1)
            if state in ("pending", "running") and int(n) > 0:
                depths.setdefault(queue, {"pending": 0, "running": 0})[state] = int(n)
        return depths

    async def recent_durations(
        self, job_type: JobType, model_type: str | None, queue: str, limit: int = 20
    ) -> list[float]:
        if limit <= 0:
            return []
        key = self.k("dur", durations_key(job_type, model_type, queue))
        rows: list[str] = await self.call(lambda r: r.lrange(key, 0, limit - 1), retry=True)
        return [int(ms) / 1000.0 for ms in rows]

    # -- workers -------------------------------------------------------------------------------
    async def wait_for_work(
        self, queues: list[str], timeout: float, waiter: Waiter | None = None
    ) -> list[Claim]:
        return await handover.wait_for_work(self, queues, timeout, waiter)
