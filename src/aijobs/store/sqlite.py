"""The embedded job store: one SQLite file shared by the API process and any number of workers.

Design (PROTOCOL.md §17.5, adapted to our state names):

* WAL, ``synchronous=FULL`` (a COMMIT is the durability point), ``busy_timeout`` so that writers
  from several processes queue up instead of failing, and every write transaction is
  ``BEGIN IMMEDIATE``: it takes the write lock up front, so a transaction never has to upgrade a
  read snapshot to a write lock (the one case where SQLite returns SQLITE_BUSY without waiting).
* Every state change is one transaction. Worker writes are fenced by the claim's token:
  ``... WHERE id=? AND token=? AND state='running'``; zero rows changed means stale, no change.
* ``seq`` is the rowid (AUTOINCREMENT, never reused): FIFO order for claims, newest-first order
  for listings, and a cheap covering index for deep pagination.
* Counts per (queue, state) live in a small ``counts`` table kept exact by triggers, inside the
  very transactions that change ``jobs``; ``total`` and queue depths are O(queues), not O(jobs).
* Two connections per store: one writer (guarded by an asyncio lock, since a transaction spans
  several awaits) and one reader. Readers never block behind a writer in WAL mode, so API reads
  stay fast while a worker in another process holds the write lock.

Times are integer milliseconds from ``time.time()`` in the table and float seconds on ``Job``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from aijobs import errors
from aijobs.jobs import (
    TERMINAL,
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

WAKE_POLL_SECONDS = 0.005
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    job_type         TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    state            TEXT    NOT NULL
        CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    payload          TEXT    NOT NULL,
    model_type       TEXT,
    model_id         TEXT,
    description      TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_seconds  REAL,
    progress         REAL    NOT NULL DEFAULT 0,
    metrics          TEXT    NOT NULL DEFAULT '{}',
    history          TEXT    NOT NULL DEFAULT '[]',
    result           TEXT,
    error            TEXT,
    owner            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    token            TEXT,
    lease_until      INTEGER,
    stalls           INTEGER NOT NULL DEFAULT 0,
    idem             TEXT UNIQUE,
    log              TEXT  -- last: reading the columns before it never touches its overflow pages
);
-- claim: an index seek per queue, already in (priority desc, seq) order
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (queue, priority DESC, seq)
    WHERE state = 'pending' AND cancel_requested = 0;
-- rescue: only running jobs, ordered by deadline
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until) WHERE state = 'running';
-- GET /jobs?status=...: newest first within a state
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
-- GET /jobs with a deep offset: skipping rows over this tiny index, not over the table
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
-- duration estimates
CREATE INDEX IF NOT EXISTS jobs_durations
    ON jobs (job_type, model_type, queue, finished_at, started_at) WHERE state = 'completed';

CREATE TABLE IF NOT EXISTS counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF state, queue ON jobs
    WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;

CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    info      TEXT    NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    model_id   TEXT PRIMARY KEY,
    record     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS models_created ON models (created_at);
"""

# Every Job field but `log`, in Job order; `_job()` maps a row of these (plus an optional log).
_COLS = (
    "id, job_type, queue, state, payload, model_type, model_id, description, priority, attempt, "
    "max_attempts, timeout_seconds, progress, metrics, history, result, error, owner, "
    "cancel_requested, created_at, updated_at, started_at, finished_at"
)
_FIELDS = tuple(c.strip() for c in _COLS.split(","))
_NCOLS = len(_FIELDS)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _s(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _job(row: Sequence[Any], log: str | None = None) -> Job:
    f = dict(zip(_FIELDS, row, strict=False))
    for name in ("payload", "metrics", "history", "result"):
        if f[name] is not None:
            f[name] = json.loads(f[name])
    for name in ("created_at", "updated_at", "started_at", "finished_at"):
        f[name] = _s(f[name])
    f["cancel_requested"] = bool(f["cancel_requested"])
    return Job(**f, log=log)


class SQLiteStore:
    """JobStore over one SQLite file (see the module docstring for the design)."""

    kind = "sqlite"

    def __init__(self, path: str, *, max_stalls: int | None = None) -> None:
        self.path = path
        self.max_stalls = max_stalls
        self._memory = path in ("", ":memory:")
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        if not self._memory:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)

    # -- lifecycle ---------------------------------------------------------------------------
    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: the sqlite3 module never opens transactions behind our back;
        # we issue BEGIN IMMEDIATE / COMMIT ourselves.
        db = await aiosqlite.connect(
            self.path if not self._memory else ":memory:",
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
        )
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return db

    async def open(self) -> None:
        if self._writer is not None:
            return
        writer = await self._connect()
        try:
            if not self._memory:
                await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA synchronous = FULL")
            await writer.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _split_sql(_SCHEMA):
                    await writer.execute(stmt)
                await writer.execute("COMMIT")
            except BaseException:
                if writer.in_transaction:
                    await writer.execute("ROLLBACK")
                raise
            if self._memory:
                reader = writer
            else:
                reader = await self._connect()
                await reader.execute("PRAGMA query_only = 1")
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        async with self._lock:
            if reader is not None and reader is not writer:
                await reader.close()
            if writer is not None:
                await writer.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _conn(self, which: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if which is None:
            raise errors.StoreUnavailable("the SQLite store is not open")
        return which

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        async with self._lock:
            db = self._conn(self._writer)
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        db = self._conn(self._reader)
        if self._memory:  # one shared connection: never read inside another task's transaction
            async with self._lock:
                return list(await db.execute_fetchall(sql, params))
        return list(await db.execute_fetchall(sql, params))

    async def wait_for_work(
        self, queues: list[str], timeout: float, waiter: Waiter | None = None
    ) -> list[Claim]:
        await self._until_changed(timeout)
        return []  # a hint only: one SQLite file has one machine's few workers, claiming

    async def wait_terminal(self, job_id: str, timeout: float) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            rows = await self._read(f"SELECT {_COLS} FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                raise errors.JobNotFound(f"job {job_id} not found")
            job = _job(rows[0])
            left = deadline - time.monotonic()
            if job.terminal or left <= 0:
                return job
            await self._until_changed(left)

    async def _until_changed(self, timeout: float) -> None:
        # No cross-process notifications in SQLite: watch data_version, which changes whenever
        # another connection (another process, or our own writer) commits. One cheap pragma
        # every few milliseconds instead of a query.
        deadline = time.monotonic() + timeout
        (first,), *_ = await self._read("PRAGMA data_version")
        while time.monotonic() < deadline:
            await asyncio.sleep(WAKE_POLL_SECONDS)
            (version,), *_ = await self._read("PRAGMA data_version")
            if version != first:
                return

    # -- clients -----------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"healthy": False, "store": self.kind, "path": self.path}
        try:
            t0 = time.perf_counter()
            (mode,), *_ = await self._read("PRAGMA journal_mode")
            (total,), *_ = await self._read("SELECT coalesce(sum(n), 0) FROM counts")
            info.update(
                healthy=True,
                journal_mode=mode,
                jobs=total,
                latency_ms=round((time.perf_counter() - t0) * 1000, 3),
            )
        except Exception as exc:  # health never raises: it reports
            info["error"] = f"{type(exc).__name__}: {exc}"
        return info

    async def submit(self, job: NewJob, idempotency_key: str | None = None) -> Job:
        now = _now_ms()
        async with self._tx() as db:
            if idempotency_key is not None:
                rows = await db.execute_fetchall(
                    f"SELECT {_COLS} FROM jobs WHERE idem = ?", (idempotency_key,)
                )
                for row in rows:
                    return _job(row)
            rows = await db.execute_fetchall(
                "INSERT INTO jobs (id, job_type, queue, state, payload, model_type, model_id, "
                "description, priority, max_attempts, timeout_seconds, created_at, updated_at, "
                "idem) "
                f"VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLS}",
                (
                    new_job_id(),
                    job.job_type.value,
                    job.queue,
                    _dumps(job.payload),
                    job.model_type,
                    job.model_id,
                    job.description,
                    job.priority,
                    job.max_attempts,
                    job.timeout_seconds,
                    now,
                    now,
                    idempotency_key,
                ),
            )
            (row,) = rows
            return _job(row)

    async def get(self, job_id: str) -> Job:
        rows = await self._read(f"SELECT {_COLS}, log FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise errors.JobNotFound(f"job {job_id} not found")
        return _job(rows[0], log=rows[0][_NCOLS])

    async def list_jobs(
        self, state: State | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[Job], int]:
        limit, offset = max(0, limit), max(0, offset)
        # Page the tiny covering index first, then fetch only the page's rows (a "deferred
        # join"): a deep OFFSET walks index entries, never table rows, and never `log`.
        where, filt = ("", ()) if state is None else ("WHERE state = ?", (State(state).value,))
        rows = await self._read(
            f"SELECT {_COLS} FROM jobs WHERE seq IN (SELECT seq FROM jobs {where} "
            "ORDER BY seq DESC LIMIT ? OFFSET ?) ORDER BY seq DESC",
            (*filt, limit, offset),
        )
        (total,), *_ = await self._read(f"SELECT coalesce(sum(n), 0) FROM counts {where}", filt)
        return [_job(r) for r in rows], int(total)

    async def cancel(self, job_id: str, reason: str = "Job cancelled by user") -> Job:
        now = _now_ms()
        async with self._tx() as db:
            rows = await db.execute_fetchall("SELECT state FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                raise errors.JobNotFound(f"job {job_id} not found")
            state = State(next(iter(rows))[0])
            if state in TERMINAL:
                raise errors.NotCancellable(f"job {job_id} is already {state.value}")
            # A running job is cancelled at once too. Its token is kept (lease cleared) only so
            # that the owner's next renew answers CANCEL; finish/fail need state 'running', so
            # nothing the worker writes afterwards lands.
            rows = await db.execute_fetchall(
                "UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, updated_at = ?, "
                "lease_until = NULL, cancel_requested = (state = 'running') "
                f"WHERE id = ? RETURNING {_COLS}, log",
                (reason, now, now, job_id),
            )
            (row,) = rows
            return _job(row, log=row[_NCOLS])

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        rows = await self._read(
            "SELECT queue, state, n FROM counts WHERE state IN ('pending', 'running') AND n > 0"
        )
        depths: dict[str, dict[str, int]] = {}
        for queue, state, n in rows:
            depths.setdefault(queue, {"pending": 0, "running": 0})[state] = n
        return depths

    async def recent_durations(
        self, job_type: JobType, model_type: str | None, queue: str, limit: int = 20
    ) -> list[float]:
        rows = await self._read(
            "SELECT finished_at - started_at FROM jobs WHERE state = 'completed' "
            "AND job_type = ? AND model_type IS ? AND queue = ? AND started_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?",
            (JobType(job_type).value, model_type, queue, max(0, limit)),
        )
        return [ms / 1000.0 for (ms,) in rows]

    # -- workers -----------------------------------------------------------------------------
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
        if not queues or limit <= 0:
            return []
        now = _now_ms()
        # One seek per queue (each already in priority/FIFO order), merged, best `limit` taken:
        # an `IN (queues)` over the index would sort every pending job of those queues instead.
        per_queue = " UNION ALL ".join(
            "SELECT * FROM (SELECT seq, priority, job_type FROM jobs WHERE state = 'pending' "
            "AND cancel_requested = 0 AND queue = ? ORDER BY priority DESC, seq LIMIT ?)"
            for _ in queues
        )
        params: list[Any] = [worker_id, now + int(lease_seconds * 1000), now, now]
        for q in queues:
            params += [q, limit]
        cap = -1 if max_training is None else max(0, max_training)
        params += [limit, cap, cap]
        async with self._tx() as db:
            rows = await db.execute_fetchall(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, "
                "token = lower(hex(randomblob(16))) || ':' || (attempt + 1), owner = ?, "
                "lease_until = ?, started_at = ?, updated_at = ?, progress = 0 "
                # The best `limit`, cut at the first training job past max_training (-1: none).
                "WHERE seq IN (SELECT seq FROM (SELECT seq, sum(job_type = 'training') OVER "
                "(ORDER BY priority DESC, seq) AS training FROM (SELECT * FROM "
                f"({per_queue}) ORDER BY priority DESC, seq LIMIT ?)) "
                "WHERE ? < 0 OR training <= ?) "
                f"RETURNING {_COLS}, token, priority, seq",
                params,
            )
        ordered = sorted(rows, key=lambda r: (-r[_NCOLS + 1], r[_NCOLS + 2]))
        return [Claim(job=_job(r), token=r[_NCOLS]) for r in ordered]

    async def renew(
        self,
        worker_id: str,
        leases: dict[str, tuple[str, Progress | None]],
        lease_seconds: float,
    ) -> dict[str, Renewal]:
        now = _now_ms()
        until = now + int(lease_seconds * 1000)
        out: dict[str, Renewal] = {}
        async with self._tx() as db:
            for job_id, (token, progress) in leases.items():
                fraction = metrics = history = None
                if progress is not None:
                    if progress.fraction is not None:
                        fraction = min(1.0, max(0.0, float(progress.fraction)))
                    if progress.metrics is not None:
                        metrics = _dumps(progress.metrics)
                    if progress.history is not None:
                        history = _dumps(progress.history)
                rows = await db.execute_fetchall(
                    "UPDATE jobs SET lease_until = ?, updated_at = ?, "
                    "progress = coalesce(?, progress), metrics = coalesce(?, metrics), "
                    "history = coalesce(?, history) "
                    "WHERE id = ? AND token = ? AND state = 'running' RETURNING 1",
                    (until, now, fraction, metrics, history, job_id, token),
                )
                if rows:
                    out[job_id] = Renewal.OK
                    continue
                rows = await db.execute_fetchall(
                    "SELECT 1 FROM jobs WHERE id = ? AND token = ? AND state = 'cancelled'",
                    (job_id, token),
                )
                out[job_id] = Renewal.CANCEL if rows else Renewal.LOST
            await db.execute(
                "UPDATE workers SET last_seen = ? WHERE worker_id = ?", (now, worker_id)
            )
        return out

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
        if not finishes:
            return []
        now = _now_ms()
        out: list[bool] = []
        async with self._tx() as db:  # one transaction, one fsync, for all of them
            for f in finishes:
                rows = await db.execute_fetchall(
                    "UPDATE jobs SET state = 'completed', result = ?, log = coalesce(?, log), "
                    "error = NULL, progress = 1.0, finished_at = ?, updated_at = ?, token = NULL, "
                    "lease_until = NULL WHERE id = ? AND token = ? AND state = 'running' "
                    "RETURNING 1",
                    (_dumps(f.result), f.log, now, now, f.job_id, f.token),
                )
                if rows and f.model is not None:
                    await self._insert_model(db, f.model)
                out.append(bool(rows))
        return out

    async def fail(
        self, job_id: str, token: str, error: str, *, retry: bool = False, log: str | None = None
    ) -> bool:
        now = _now_ms()
        async with self._tx() as db:
            # retry with attempts left -> pending again (seq unchanged: it keeps its FIFO place);
            # otherwise -> failed. `error` is kept either way, as the last error.
            rows = await db.execute_fetchall(
                "UPDATE jobs SET error = ?, log = coalesce(?, log), updated_at = ?, "
                "token = NULL, lease_until = NULL, "
                "state = CASE WHEN ? AND attempt < max_attempts THEN 'pending' ELSE 'failed' END, "
                "owner = CASE WHEN ? AND attempt < max_attempts THEN NULL ELSE owner END, "
                "started_at = CASE WHEN ? AND attempt < max_attempts THEN NULL ELSE started_at END,"
                " progress = CASE WHEN ? AND attempt < max_attempts THEN 0 ELSE progress END, "
                "finished_at = CASE WHEN ? AND attempt < max_attempts THEN NULL ELSE ? END "
                "WHERE id = ? AND token = ? AND state = 'running' RETURNING 1",
                (error, log, now, retry, retry, retry, retry, retry, now, job_id, token),
            )
            return bool(rows)

    async def rescue_expired(self) -> list[tuple[str, State]]:
        now = _now_ms()
        spent = (
            "(attempt >= max_attempts OR (:max_stalls IS NOT NULL AND stalls + 1 > :max_stalls))"
        )
        # Every worker and the API call this every few seconds: look before taking the write
        # lock. INDEXED BY: without ANALYZE statistics the planner prefers jobs_state
        # (state='running'), a scan of every running job, to this range seek.
        due = "FROM jobs INDEXED BY jobs_lease WHERE state = 'running' AND lease_until < :now"
        if not await self._read(f"SELECT 1 {due} LIMIT 1", {"now": now}):
            return []
        async with self._tx() as db:
            # Clearing token and owner fences the lost worker: its renew answers LOST and its
            # finish changes nothing. (In UPDATE, every right-hand side sees the old row.)
            rows = await db.execute_fetchall(
                "UPDATE jobs INDEXED BY jobs_lease SET stalls = stalls + 1, token = NULL, "
                "owner = NULL, lease_until = NULL, updated_at = :now, "
                f"state = CASE WHEN {spent} THEN 'failed' ELSE 'pending' END, "
                f"error = CASE WHEN {spent} "
                "THEN 'worker lost: lease expired after ' || attempt || ' attempt(s)' "
                "ELSE 'worker lost: lease expired on attempt ' || attempt || ', requeued' END, "
                f"finished_at = CASE WHEN {spent} THEN :now ELSE NULL END, "
                f"started_at = CASE WHEN {spent} THEN started_at ELSE NULL END, "
                f"progress = CASE WHEN {spent} THEN progress ELSE 0 END "
                "WHERE state = 'running' AND lease_until < :now RETURNING id, state",
                {"now": now, "max_stalls": self.max_stalls},
            )
        return [(job_id, State(state)) for job_id, state in rows]

    async def register_worker(self, info: WorkerInfo) -> None:
        now = _now_ms()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO workers (worker_id, info, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, "
                "last_seen = excluded.last_seen",
                (info.worker_id, info.model_dump_json(), now),
            )

    async def unregister_worker(self, worker_id: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))

    async def live_workers(self, ttl_seconds: float) -> list[WorkerInfo]:
        since = _now_ms() - int(ttl_seconds * 1000)
        rows = await self._read(
            "SELECT info, last_seen FROM workers WHERE last_seen >= ? ORDER BY worker_id",
            (since,),
        )
        return [
            WorkerInfo.model_validate_json(info).model_copy(update={"last_seen": seen / 1000.0})
            for info, seen in rows
        ]

    # -- models ------------------------------------------------------------------------------
    @staticmethod
    async def _insert_model(db: aiosqlite.Connection, model: ModelRecord) -> None:
        await db.execute(
            "INSERT INTO models (model_id, record, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (model_id) DO UPDATE SET record = excluded.record, "
            "created_at = excluded.created_at",
            (model.model_id, model.model_dump_json(), int(model.created_at * 1000)),
        )

    async def add_model(self, model: ModelRecord) -> None:
        async with self._tx() as db:
            await self._insert_model(db, model)

    async def get_model(self, model_id: str) -> ModelRecord:
        rows = await self._read("SELECT record FROM models WHERE model_id = ?", (model_id,))
        if not rows:
            raise errors.ModelNotFound(f"model {model_id} not found")
        return ModelRecord.model_validate_json(rows[0][0])

    async def list_models(self) -> list[ModelRecord]:
        rows = await self._read("SELECT record FROM models ORDER BY created_at DESC, rowid DESC")
        return [ModelRecord.model_validate_json(r) for (r,) in rows]


def _split_sql(script: str) -> Iterable[str]:
    """Split the schema into statements (executescript would COMMIT our open transaction)."""
    stmt = ""
    for line in script.splitlines(keepends=True):
        stmt += line
        if sqlite3.complete_statement(stmt):
            if stmt.strip():
                yield stmt
            stmt = ""
    if stmt.strip():
        yield stmt
