"""The Redis job store: any number of API processes and workers, on any number of hosts.

Design (PROTOCOL.md §17, adapted to the JobStore contract and our state names):

* Every transition is one Lua script, run with EVALSHA: one round trip, atomic. The scripts live
  in ``redis_scripts/``; ``_lib.lua`` (prepended to each) documents every key and the invariant
  that the chaos tests check (``redis_check.py``).
* Claim and lease record are one step; leases, timestamps and rescue use the server's clock
  (``TIME``), so workers' clocks do not matter. Every write by a worker carries its claim's
  token and changes nothing when the token is stale.
* Reads are indexed: listing is a rank range of a sorted set (``all`` or ``state:<s>``), totals
  are ZCARDs, queue depths one small hash, rescue a range of the ``leases`` index by deadline.
* An idle worker registers as a waiter of its queues and blocks on ``BLPOP`` of its own inbox.
  A job submitted while nothing is queued ahead of it is claimed for a waiter by the submit
  script itself and handed over in that inbox: the worker starts it with no claim of its own
  (one round trip less on the latency path). Other work (a retry, a rescue, a claim that left
  work behind) sends one waiter a hint to claim, so wake-ups chain from one idle worker to the
  next. The registration expires just before the worker's pop ends, so nothing is handed to a
  worker that no longer listens; a stopping worker's untaken hand-overs go back to pending.
* Finished jobs are kept (``retain_jobs``/``retain_seconds``), trimmed a few at a time by the
  scripts that finish jobs, oldest first.
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
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aijobs import errors
from aijobs.jobs import (
    Claim,
    Finish,
    Job,
    JobType,
    ModelRecord,
    NewJob,
    Progress,
    Renewal,
    State,
    Waiter,
    WorkerInfo,
    new_job_id,
)
from aijobs.store.redis_announce import Announcements

if TYPE_CHECKING:
    from aijobs.settings import Settings

log = logging.getLogger("aijobs.store.redis")

MIN_VERSION = (7, 0)
RESCUE_BATCH = 500
WORKER_FORGET_SECONDS = 86400.0  # a worker record silent this long is deleted
RETRY_PAUSE = 0.05
WAIT_MARGIN_MS = 50  # a waiter's registration ends this long before its blocking pop does
WATCH_RECHECK_SECONDS = 5.0  # a waiter looks again this often, announcement or not
PRIORITY_SPAN = 2**31 - 1  # priorities are ordered exactly within ±(2^31 - 1), clamped beyond

# The job fields the scripts return (read_job in _lib.lua), in Job's order; no `log`.
FIELDS = (
    "id",
    "job_type",
    "queue",
    "state",
    "payload",
    "model_type",
    "model_id",
    "description",
    "priority",
    "attempt",
    "max_attempts",
    "timeout_seconds",
    "progress",
    "metrics",
    "history",
    "result",
    "error",
    "owner",
    "cancel_requested",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
)
WRITE_SCRIPTS = (
    "submit",
    "claim",
    "renew",
    "finish",
    "fail",
    "cancel",
    "rescue",
    "register_worker",
    "unregister_worker",
    "stop_waiting",
    "watch",
    "wait",
)
READ_SCRIPTS = ("list", "live_workers", "list_models")
# Replies meaning "Redis cannot serve this now", not "this request is wrong" (LOADING is a
# ConnectionError in redis-py already): by class, and by the error codes it leaves in the text.
TRANSIENT_ERRORS = (rex.OutOfMemoryError, rex.ReadOnlyError, rex.TryAgainError)
TRANSIENT_CODES = ("MISCONF", "MASTERDOWN", "NOREPLICAS", "BUSY", "OOM", "READONLY")


class RedisMisconfigured(errors.StoreUnavailable):
    """The Redis server is configured in a way that can lose jobs"""


def _script_source(name: str) -> str:
    folder = resources.files("aijobs.store") / "redis_scripts"
    lib = (folder / "_lib.lua").read_text(encoding="utf-8")
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    # no-writes: a read still works when Redis refuses writes (OOM, a read-only replica)
    flags = "#!lua flags=no-writes\n" if name in READ_SCRIPTS else "#!lua\n"
    return flags + lib + body


def _redact(url: str) -> str:
    """The URL without its password, for messages and health reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _honour_cancel() -> None:
    """Raise CancelledError if this task was cancelled during a Redis call that did not raise
    it: redis-py (8.x) can swallow a cancel while it acquires a connection, and would then run
    the call to its end (a blocking pop for its whole timeout), or report a lost connection."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _s(ms: str | None) -> float | None:
    return None if ms is None else int(ms) / 1000.0


def _job(values: Sequence[str | None], log_text: str | None = None) -> Job:
    f = dict(zip(FIELDS, values, strict=True))

    def need(name: str) -> str:
        value = f[name]
        if value is None:
            raise errors.AIJobsError(f"job record {f['id']!r} lacks {name}")
        return value

    created = _s(need("created_at"))
    updated = _s(need("updated_at"))
    assert created is not None and updated is not None
    # Built from our own scripts' replies, every field already of its type: no validation pass
    # (this runs for every job a worker claims).
    return Job.model_construct(
        id=need("id"),
        job_type=JobType(need("job_type")),
        queue=need("queue"),
        state=State(need("state")),
        payload=json.loads(need("payload")),
        model_type=f["model_type"],
        model_id=f["model_id"],
        description=f["description"],
        priority=int(need("priority")),
        attempt=int(need("attempt")),
        max_attempts=int(need("max_attempts")),
        timeout_seconds=None if f["timeout_seconds"] is None else float(f["timeout_seconds"]),
        progress=float(need("progress")),
        metrics=json.loads(need("metrics")),
        history=json.loads(need("history")),
        result=None if f["result"] is None else json.loads(f["result"]),
        error=f["error"],
        owner=f["owner"],
        cancel_requested=need("cancel_requested") == "1",
        created_at=created,
        updated_at=updated,
        started_at=_s(f["started_at"]),
        finished_at=_s(f["finished_at"]),
        log=log_text,
    )


def durations_key(job_type: JobType | str, model_type: str | None, queue: str) -> str:
    """Which run-time history a job adds to when it completes (recent_durations reads it)."""
    return _dumps([JobType(job_type).value, model_type, queue])


def priority_key(priority: int) -> str:
    """10 digits that sort lexicographically as priority descending."""
    clamped = max(-PRIORITY_SPAN, min(PRIORITY_SPAN, priority))
    return f"{PRIORITY_SPAN - clamped:010d}"


def submit_args(job: NewJob, idempotency_key: str | None = None) -> list[Any]:
    """The submit script's own arguments for `job`, under a new job id."""
    fields: list[Any] = [
        "job_type",
        JobType(job.job_type).value,
        "payload",
        _dumps(job.payload),
        "priority",
        int(job.priority),
        "max_attempts",
        int(job.max_attempts),
        "durkey",
        durations_key(job.job_type, job.model_type, job.queue),
    ]
    for name in ("model_type", "model_id", "description"):
        if (value := getattr(job, name)) is not None:
            fields += [name, value]
    if job.timeout_seconds is not None:
        fields += ["timeout_seconds", repr(float(job.timeout_seconds))]
    key = idempotency_key or ""
    seed = secrets.token_hex(12)  # of the fencing token, if the job is handed to a waiter
    return [new_job_id(), key, priority_key(job.priority), job.queue, seed, *fields]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


class RedisStore:
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
        max_stalls: int | None = None,
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
        self.max_stalls = max_stalls
        self.key = "{" + prefix + "}"  # every key starts with this hash tag
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._announcements: Announcements | None = None
        self.server: dict[str, Any] = {}  # what open() learned about the server

    @classmethod
    def from_settings(cls, url: str, settings: Settings, **options: Any) -> RedisStore:
        """Build from an aijobs Settings (explicit options win)."""
        defaults: dict[str, Any] = {
            "prefix": settings.redis_prefix,
            "pool_size": settings.redis_pool_size,
            "socket_timeout": settings.redis_socket_timeout,
            "connect_timeout": settings.redis_connect_timeout,
            "retain_jobs": settings.redis_retain_jobs,
            "retain_seconds": settings.redis_retain_seconds,
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
        client = aioredis.Redis.from_pool(pool)
        try:
            self.server = await self._check_server(client)
        except BaseException:
            await client.aclose()
            raise
        self._scripts = {
            name: client.register_script(_script_source(name))
            for name in (*WRITE_SCRIPTS, *READ_SCRIPTS)
        }
        self._client = client
        self._announcements = Announcements(client, self.k("done"))

    async def close(self) -> None:
        client, self._client = self._client, None
        self._scripts = {}
        announcements, self._announcements = self._announcements, None
        if announcements is not None:
            await announcements.close()
        if client is not None:
            await client.aclose()

    async def _check_server(self, client: aioredis.Redis) -> dict[str, Any]:
        """Refuse a Redis that can lose jobs silently; warn about one that loses them on restart."""
        where = _redact(self.url)
        try:
            info: dict[str, Any] = await client.info("server")
            info.update(await client.info("memory"))
            info.update(await client.info("persistence"))
            save = await self._config_get(client, "save")
            appendfsync = await self._config_get(client, "appendfsync")
        except (rex.ConnectionError, rex.TimeoutError) as exc:
            raise errors.StoreUnavailable(f"cannot reach Redis at {where}: {exc}") from exc
        version = str(info.get("redis_version", "0"))
        if _version(version) < MIN_VERSION:
            raise RedisMisconfigured(
                f"Redis at {where} is version {version}; aijobs needs Redis 7.0 or newer"
            )
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if policy != "noeviction":
            raise RedisMisconfigured(
                f"Redis at {where} has maxmemory-policy {policy}: under memory pressure it "
                "deletes keys, and jobs would vanish without a trace. Set "
                "'maxmemory-policy noeviction' (redis.conf, or CONFIG SET maxmemory-policy "
                "noeviction); Redis then refuses writes when full and aijobs answers 503."
            )
        aof = str(info.get("aof_enabled", "0")) == "1"
        if not aof and not save:
            log.warning(
                "Redis at %s has persistence off (appendonly no, %s): a Redis restart loses "
                "every job. Run it with 'appendonly yes'.",
                where,
                "no RDB save points" if save == "" else "RDB settings unknown: CONFIG is disabled",
            )
        elif not aof:
            log.warning(
                "Redis at %s persists by RDB snapshots only (save %s): a crash loses the jobs "
                "since the last snapshot. Run it with 'appendonly yes'.",
                where,
                save,
            )
        elif appendfsync not in (None, "always"):
            log.info(
                "Redis at %s: appendfsync %s; a power loss can lose about the last second of "
                "writes ('appendfsync always' closes that window)",
                where,
                appendfsync,
            )
        return {
            "redis_version": version,
            "maxmemory_policy": policy,
            "aof_enabled": aof,
            "appendfsync": appendfsync,
            "rdb_save": save,
        }

    @staticmethod
    async def _config_get(client: aioredis.Redis, name: str) -> str | None:
        """CONFIG GET, or None where a managed Redis disables CONFIG."""
        try:
            reply: dict[Any, Any] = await client.config_get(name)
        except rex.ResponseError:
            return None
        value = reply.get(name)
        return None if value is None else str(value)

    # -- plumbing ------------------------------------------------------------------------------
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise errors.StoreUnavailable("the Redis store is not open")
        return self._client

    async def _call(self, fn: Callable[[aioredis.Redis], Awaitable[Any]], *, retry: bool) -> Any:
        """Run one Redis call; unavailability becomes StoreUnavailable.

        `retry`: the call may run twice without harm, so a failure that may be a stale pooled
        connection is retried once on a fresh one.
        """
        client = self._redis()
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

    async def _eval(self, name: str, *args: Any, retry: bool = False) -> Any:
        """Run one of our scripts (one EVALSHA; NOSCRIPT after a restart reloads it once)."""
        self._redis()
        script = self._scripts[name]
        argv = self._argv(args)
        return await self._call(lambda _: script(keys=[self.key], args=argv), retry=retry)

    def _argv(self, args: Sequence[Any]) -> list[Any]:
        return [self.retain_jobs, int(self.retain_seconds * 1000), *args]

    async def queue_script(self, pipe: Any, name: str, *args: Any) -> None:
        """Queue one of our scripts on a redis-py pipeline (bulk loads, benchmarks)."""
        await self._scripts[name](keys=[self.key], args=self._argv(args), client=pipe)

    def k(self, *parts: str) -> str:
        return ":".join((self.key, *parts))

    # -- clients -------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "healthy": False,
            "store": self.kind,
            "url": _redact(self.url),
            "prefix": self.prefix,
        }
        client = self._client
        if client is None:
            info["error"] = "the Redis store is not open"
            return info
        try:
            t0 = time.perf_counter()
            await client.ping()
            latency = (time.perf_counter() - t0) * 1000
            server: dict[str, Any] = await client.info("server")
            server.update(await client.info("memory"))
            server.update(await client.info("persistence"))
            jobs = await client.zcard(self.k("all"))
            aof = str(server.get("aof_enabled", "0")) == "1"
            policy = str(server.get("maxmemory_policy", ""))
            info.update(
                healthy=True,
                latency_ms=round(latency, 3),
                version=server.get("redis_version"),
                jobs=jobs,
                persistence={
                    "aof_enabled": aof,
                    "appendfsync": self.server.get("appendfsync"),
                    "rdb_save": self.server.get("rdb_save"),
                    "aof_last_write_status": server.get("aof_last_write_status"),
                    "rdb_last_bgsave_status": server.get("rdb_last_bgsave_status"),
                    "loading": str(server.get("loading", "0")) == "1",
                },
                maxmemory_policy=policy,
                memory={
                    "used_bytes": server.get("used_memory"),
                    "used_human": server.get("used_memory_human"),
                    "peak_human": server.get("used_memory_peak_human"),
                    "maxmemory_bytes": server.get("maxmemory"),
                    "maxmemory_human": server.get("maxmemory_human"),
                },
            )
            warnings = []
            if policy != "noeviction":
                warnings.append(f"maxmemory-policy {policy} can evict jobs")
            if not aof and not self.server.get("rdb_save"):
                warnings.append("persistence is off: a restart loses every job")
            if warnings:
                info["warnings"] = warnings
                info["healthy"] = policy == "noeviction"
        except Exception as exc:  # health never raises: it reports
            info["error"] = f"{type(exc).__name__}: {exc}"
        return info

    async def submit(self, job: NewJob, idempotency_key: str | None = None) -> Job:
        # The id is chosen here, so that a retry of a call whose reply was lost finds its job.
        reply = await self._eval("submit", *submit_args(job, idempotency_key), retry=True)
        return _job(reply)

    async def get(self, job_id: str) -> Job:
        key = self.k("job", job_id)
        row: dict[str, str] = await self._call(lambda r: r.hgetall(key), retry=True)
        if not row:
            raise errors.JobNotFound(f"job {job_id} not found")
        return _job([row.get(name) for name in FIELDS], log_text=row.get("log"))

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
                reply = await self._eval("watch", job_id, ttl_ms, retry=True)
                if reply is None:
                    raise errors.JobNotFound(f"job {job_id} not found")
                _state, *fields = reply
                left = deadline - loop.time()
                if fields or left <= 0:
                    return _job(fields) if fields else await self.get(job_id)
                with contextlib.suppress(TimeoutError):
                    if announced := await asyncio.wait_for(ended, min(left, WATCH_RECHECK_SECONDS)):
                        return _job(announced)
            finally:
                announcements.forget(job_id, ended)

    async def list_jobs(
        self, state: State | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[Job], int]:
        limit, offset = max(0, limit), max(0, offset)
        which = "" if state is None else State(state).value
        total, *rows = await self._eval("list", which, offset, limit, retry=True)
        return [_job(r) for r in rows], int(total)

    async def cancel(self, job_id: str, reason: str = "Job cancelled by user") -> Job:
        reply = await self._eval("cancel", job_id, reason)
        if reply[0] == "missing":
            raise errors.JobNotFound(f"job {job_id} not found")
        if reply[0] == "terminal":
            raise errors.NotCancellable(f"job {job_id} is already {reply[1]}")
        return _job(reply[1], log_text=reply[2])

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        key = self.k("counts")
        counts: dict[str, str] = await self._call(lambda r: r.hgetall(key), retry=True)
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
        rows: list[str] = await self._call(lambda r: r.lrange(key, 0, limit - 1), retry=True)
        return [int(ms) / 1000.0 for ms in rows]

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
        queues = list(dict.fromkeys(queues))
        if not queues or limit < 0:
            return []
        # Not retried: a claim whose reply was lost holds its jobs until their lease expires,
        # and they are rescued then; a blind retry could not tell.
        reply = await self._eval(
            "claim",
            worker_id,
            max(1, int(lease_seconds * 1000)),
            int(limit),
            secrets.token_hex(12),
            -1 if max_training is None else max(0, max_training),
            *queues,
        )
        return [Claim(job=_job(fields), token=token) for token, fields in reply]

    async def wait_for_work(
        self, queues: list[str], timeout: float, waiter: Waiter | None = None
    ) -> list[Claim]:
        queues = list(dict.fromkeys(queues))
        # BLPOP blocks on the server; keep it inside the socket timeout.
        block = min(timeout, max(0.05, self.socket_timeout - 1.0))
        if not queues or block <= 0:
            return []
        # Without a waiter: hints of any work, and no hand-over (lease 0).
        worker_id = waiter.worker_id if waiter else f"anonymous:{secrets.token_hex(8)}"
        lease_ms = max(1, int(waiter.lease_seconds * 1000)) if waiter else 0
        max_training = max(0, waiter.max_training) if waiter else 1
        serial = secrets.token_hex(6)
        ttl_ms = max(1, int(block * 1000) - WAIT_MARGIN_MS)
        waiting = f"{serial} {max_training} {lease_ms}"
        if not await self._eval("wait", worker_id, waiting, ttl_ms, *queues, retry=True):
            return []  # work is ready: claim it
        inbox = self.k("inbox", worker_id)
        try:
            reply = await self._call(lambda r: r.blpop([inbox], timeout=block), retry=False)
        except asyncio.CancelledError:
            # The worker is stopping: hand it nothing more, and back what came meanwhile.
            await asyncio.shield(self._eval("stop_waiting", worker_id, retry=True))
            raise
        if reply is None or reply[1] == "hint" or waiter is None:
            return []
        handed_in, token, fields = json.loads(reply[1])
        claim = Claim(job=_job([None if v is False else v for v in fields]), token=token)
        if handed_in != serial:
            # Handed over in an earlier wait that ended without taking it (a lost connection):
            # still ours only if its lease is.
            leases: dict[str, tuple[str, Progress | None]] = {claim.job.id: (token, None)}
            renewed = await self.renew(worker_id, leases, waiter.lease_seconds)
            if renewed[claim.job.id] is not Renewal.OK:
                return []
        return [claim]

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
                    fraction = repr(min(1.0, max(0.0, float(progress.fraction))))
                if progress.metrics is not None:
                    metrics = _dumps(progress.metrics)
                if progress.history is not None:
                    history = _dumps(progress.history)
            args += [job_id, token, fraction, metrics, history]
        reply = await self._eval(
            "renew", worker_id, max(1, int(lease_seconds * 1000)), *args, retry=True
        )
        return {job_id: Renewal(answer) for job_id, answer in zip(leases, reply, strict=True)}

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

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        args: list[Any] = []
        for f in finishes:
            model_args: list[Any] = ["", "", 0]
            if f.model is not None:
                created = int(f.model.created_at * 1000)
                model_args = [f.model.model_id, f.model.model_dump_json(), created]
            has_log = "0" if f.log is None else "1"
            args += [f.job_id, f.token, _dumps(f.result), has_log, f.log or "", *model_args]
        if not args:
            return []
        return [bool(ok) for ok in await self._eval("finish", *args)]

    async def fail(
        self, job_id: str, token: str, error: str, *, retry: bool = False, log: str | None = None
    ) -> bool:
        reply = await self._eval(
            "fail",
            job_id,
            token,
            error,
            "1" if retry else "0",
            "0" if log is None else "1",
            log or "",
        )
        return bool(reply)

    async def rescue_expired(self) -> list[tuple[str, State]]:
        stalls = "" if self.max_stalls is None else int(self.max_stalls)
        rescued: list[tuple[str, State]] = []
        while True:
            reply = await self._eval("rescue", stalls, RESCUE_BATCH, retry=True)
            rescued += [(reply[i], State(reply[i + 1])) for i in range(0, len(reply), 2)]
            if len(reply) < 2 * RESCUE_BATCH:
                return rescued

    async def register_worker(self, info: WorkerInfo) -> None:
        await self._eval(
            "register_worker",
            info.worker_id,
            info.model_dump_json(),
            int(WORKER_FORGET_SECONDS * 1000),
            retry=True,
        )

    async def unregister_worker(self, worker_id: str) -> None:
        handed_back = await self._eval("unregister_worker", worker_id, retry=True)
        if handed_back:
            log.info(
                "worker %s stopped: %d job(s) handed to it went back to pending",
                worker_id,
                len(handed_back),
            )

    async def live_workers(self, ttl_seconds: float) -> list[WorkerInfo]:
        rows = await self._eval("live_workers", max(0, int(ttl_seconds * 1000)), retry=True)
        found = [
            WorkerInfo.model_validate_json(rows[i + 2]).model_copy(
                update={"last_seen": float(rows[i + 1]) / 1000.0}
            )
            for i in range(0, len(rows), 3)
        ]
        return sorted(found, key=lambda w: w.worker_id)

    # -- models --------------------------------------------------------------------------------
    async def add_model(self, model: ModelRecord) -> None:
        models, by_time = self.k("models"), self.k("models_by_time")

        async def add(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(models, model.model_id, model.model_dump_json())
                pipe.zadd(by_time, {model.model_id: int(model.created_at * 1000)})
                await pipe.execute()

        await self._call(add, retry=True)

    async def get_model(self, model_id: str) -> ModelRecord:
        key = self.k("models")
        record: str | None = await self._call(lambda r: r.hget(key, model_id), retry=True)
        if record is None:
            raise errors.ModelNotFound(f"model {model_id} not found")
        return ModelRecord.model_validate_json(record)

    async def list_models(self) -> list[ModelRecord]:
        rows = await self._eval("list_models", retry=True)
        return [ModelRecord.model_validate_json(r) for r in rows]
