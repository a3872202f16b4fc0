"""The embedded job store: one SQLite file shared by the API process and any number of workers.

Design:

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
* Two connections per store, one writer and one reader (``database.py``). Readers never block
  behind a writer in WAL mode, so API reads stay fast while a worker in another process holds
  the write lock.

The tables, and how a row maps to a Job, are in ``schema.py``.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from aijobs.jobs import (
    LOG_KEEP_CHARS,
    ROW_FIELDS,
    TERMINAL,
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
)
from aijobs.store.base import (
    RetryBackoff,
    StoreBase,
    compact_json,
    distinct_queues,
    error_text,
    job_not_found,
    not_cancellable,
)
from aijobs.store.sqlite import upkeep
from aijobs.store.sqlite.catalog import SQLiteCatalog, insert_model
from aijobs.store.sqlite.clock import StoreClock, settle_lease_clock
from aijobs.store.sqlite.database import BUSY_TIMEOUT, Database
from aijobs.store.sqlite.schema import (
    COLUMNS,
    LOG_APPEND,
    NCOLS,
    RETRY_AT,
    ROW_COLUMNS,
    SHOWN_STATE,
    decode_job,
    progress_params,
)
from aijobs.store.sqlite.stats import SQLiteStats
from aijobs.store.sqlite.submit import insert_job
from aijobs.store.sqlite.watch import ChangeWatcher
from aijobs.store.stats import FailureReason

TRIM_INTERVAL = 30.0  # seconds between retention passes (rescue_expired runs them)


class SQLiteStore(SQLiteCatalog, SQLiteStats, StoreBase):
    """JobStore over one SQLite file (see the module docstring for the design)."""

    kind = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        max_stalls: int | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: StoreClock | None = None,
        retain_jobs: int = 0,
        retain_seconds: float = 0.0,
        retain_models_seconds: float = 0.0,
        retry_backoff: RetryBackoff | None = None,
        log_keep_chars: int = LOG_KEEP_CHARS,
    ) -> None:
        self.path = path
        self.log_keep_chars = max(1, log_keep_chars)
        self.max_stalls = max_stalls
        self.retain_jobs = max(0, retain_jobs)
        self.retain_ms = int(max(0.0, retain_seconds) * 1000)
        self.retain_models_ms = int(max(0.0, retain_models_seconds) * 1000)
        self._next_trim = 0.0  # monotonic time of the next retention pass
        self.clock = clock or StoreClock()
        self.retry_backoff = retry_backoff or RetryBackoff()
        self._db = Database(path, busy_timeout)
        self._watch = ChangeWatcher(self._db.read, self._db.bell_path)  # every waiter, one task
        # time.monotonic() at the start of the last claim; before any, commits from the wait on
        self._claimed_at = math.inf

    async def open(self) -> None:
        await self._db.open()
        await self._db.write(lambda db: settle_lease_clock(db, self.clock))

    async def close(self) -> None:
        await self._watch.close()
        await self._db.close()

    async def wait_for_work(
        self, queues: list[str], timeout: float, waiter: Waiter | None = None
    ) -> list[Claim]:
        # A job submitted since this store's last claim looked wakes it at once.
        await self._watch.until_changed(timeout, since=self._claimed_at)
        return []  # a hint only: one SQLite file has one machine's few workers, claiming

    async def wait_terminal(self, job_id: str, timeout: float) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            looked = time.monotonic()
            rows = await self._db.read(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                raise job_not_found(job_id)
            job = decode_job(rows[0])
            left = deadline - time.monotonic()
            if job.terminal or left <= 0:
                return job
            await self._watch.until_ended(job_id, left, since=looked)

    # -- clients -----------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"healthy": False, "store": self.kind, "path": self.path}
        try:
            t0 = time.perf_counter()
            (mode,), *_ = await self._db.read("PRAGMA journal_mode")
            (total,), *_ = await self._db.read("SELECT coalesce(sum(n), 0) FROM counts")
            info.update(
                healthy=True,
                journal_mode=mode,
                jobs=total,
                latency_ms=round((time.perf_counter() - t0) * 1000, 3),
            )
        except Exception as exc:  # health never raises: it reports
            info["error"] = f"{type(exc).__name__}: {exc}"
        return info

    async def submit(
        self,
        job: NewJob,
        idempotency_key: str | None = None,
        limits: PendingLimits | None = None,
        require_model: bool = False,
    ) -> Job:
        # Concurrent submissions share one transaction and one fsync (Database.grouped); each
        # caller hears its own answer only once that COMMIT is done.
        now, limits = self.clock.wall_ms(), limits or PendingLimits()
        return await self._db.grouped(
            lambda db: insert_job(db, job, idempotency_key, limits, now, require_model)
        )

    async def take_tokens(self, key: str, limit: int, window_seconds: float) -> RateDecision:
        window_ms = max(1, int(window_seconds * 1000))
        return await self._db.write(  # the time read once the write lock is ours
            lambda db: upkeep.take_tokens(db, key, limit, window_ms, self.clock.wall_ms()),
            durable=False,
        )

    async def get(self, job_id: str) -> Job:
        rows = await self._db.read(f"SELECT {COLUMNS}, log FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise job_not_found(job_id)
        return decode_job(rows[0], log=rows[0][NCOLS])

    async def list_jobs(
        self,
        state: State | None = None,
        limit: int = 100,
        offset: int = 0,
        principal: str | None = None,
    ) -> tuple[list[Job], int]:
        limit, offset = max(0, limit), max(0, offset)
        # By the state a job shows (a claimed job not started yet is pending), as counts count.
        terms = [(f"{SHOWN_STATE} = ?", State(state).value)] if state is not None else []
        if principal is not None:
            terms.insert(0, ("principal = ?", principal))
        where = ("WHERE " + " AND ".join(t for t, _ in terms)) if terms else ""
        filt = tuple(value for _, value in terms)
        # Page the tiny covering index first, then fetch only the page's rows (a "deferred
        # join"): a deep OFFSET walks index entries, never table rows, and never `log`.
        rows = await self._db.read(
            f"SELECT {ROW_COLUMNS} FROM jobs WHERE seq IN (SELECT seq FROM jobs {where} "
            "ORDER BY seq DESC LIMIT ? OFFSET ?) ORDER BY seq DESC",
            (*filt, limit, offset),
        )
        # A principal's total is counted over its index; everyone's is kept in `counts`.
        if principal is not None:
            (total,), *_ = await self._db.read(f"SELECT count(*) FROM jobs {where}", filt)
        else:
            counted = "WHERE state = ?" if state is not None else ""
            (total,), *_ = await self._db.read(
                f"SELECT coalesce(sum(n), 0) FROM counts {counted}", filt
            )
        return [decode_job(r, fields=ROW_FIELDS) for r in rows], int(total)

    async def cancel(self, job_id: str, reason: str = "Job cancelled by user") -> Job:
        def cancel(db: sqlite3.Connection) -> Job:
            now = self.clock.wall_ms()
            rows = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchall()
            if not rows:
                raise job_not_found(job_id)
            state = State(next(iter(rows))[0])
            if state in TERMINAL:
                raise not_cancellable(job_id, state)
            # A running job is cancelled at once too. Its token is kept (lease cleared) only so
            # that the owner's next renew answers CANCEL; finish/fail need state 'running', so
            # nothing the worker writes afterwards lands.
            (row,) = db.execute(
                "UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, updated_at = ?, "
                "lease_until = NULL, cancel_requested = (state = 'running'), "
                "fail_reason = CASE WHEN state = 'running' THEN 'cancelled' END "
                f"WHERE id = ? RETURNING {COLUMNS}, log",
                (reason, now, now, job_id),
            ).fetchall()
            return decode_job(row, log=row[NCOLS])

        return await self._db.write(cancel)

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        rows = await self._db.read(
            "SELECT queue, state, n FROM counts WHERE state IN ('pending', 'running') AND n > 0"
        )
        depths: dict[str, dict[str, int]] = {}
        for queue, state, n in rows:
            depths.setdefault(queue, {"pending": 0, "running": 0})[state] = n
        return depths

    async def recent_durations(
        self, job_type: JobType, model_type: str | None, queue: str, limit: int = 20
    ) -> list[float]:
        rows = await self._db.read(
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
        queues = distinct_queues(queues)
        if not queues or limit <= 0:
            return []
        self._claimed_at = time.monotonic()
        if not await self._claimable(queues):
            return []
        now = self.clock.wall_ms()
        cap = limit if max_training is None else min(limit, max(0, max_training))
        # One seek per queue and job type (each already in priority/FIFO order), merged, best
        # `limit` taken: an `IN (queues)` over the index would sort every pending job of those
        # queues instead. Training jobs past the cap are skipped in place (they keep their
        # order for a worker with a free slot) and never hold back the inference jobs behind.
        seek = (
            "SELECT * FROM (SELECT seq, priority, job_type FROM jobs WHERE state = 'pending' "
            "AND cancel_requested = 0 AND not_before IS NULL AND queue = ? AND job_type = ? "
            "ORDER BY priority DESC, seq LIMIT ?)"
        )
        per_queue = " UNION ALL ".join(f"{seek} UNION ALL {seek}" for _ in queues)
        until = self.clock.lease_ms() + int(lease_seconds * 1000)
        params: list[Any] = [worker_id, until, now, now]  # owner, lease, updated, started
        for q in queues:
            params += [q, JobType.INFERENCE.value, limit, q, JobType.TRAINING.value, cap]
        params += [cap, limit]

        def claim(db: sqlite3.Connection) -> list[Any]:
            # Retried jobs whose back-off is over become claimable (O(due), by jobs_delayed).
            db.execute(
                "UPDATE jobs INDEXED BY jobs_delayed SET not_before = NULL "
                "WHERE state = 'pending' AND not_before IS NOT NULL AND not_before <= ?",
                (self.clock.lease_ms(),),
            )
            return db.execute(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, "
                "token = lower(hex(randomblob(16))) || ':' || (attempt + 1), owner = ?, "
                # An inference job may wait in the worker behind others: it starts when the
                # worker says so (renew), and shows pending until then.
                "lease_until = ?, updated_at = ?, progress = 0, "
                "started_at = CASE WHEN job_type = 'training' THEN ? END "
                # The best `limit`, the training jobs among them no more than the cap.
                "WHERE seq IN (SELECT seq FROM (SELECT seq, priority, job_type, "
                "sum(job_type = 'training') OVER (ORDER BY priority DESC, seq) AS training "
                f"FROM ({per_queue})) WHERE job_type != 'training' OR training <= ? "
                "ORDER BY priority DESC, seq LIMIT ?) "
                f"RETURNING {COLUMNS}, token, priority, seq",
                params,
            ).fetchall()

        rows = await self._db.write(claim, durable=False)
        ordered = sorted(rows, key=lambda r: (-r[NCOLS + 1], r[NCOLS + 2]))
        return [Claim(job=decode_job(r), token=r[NCOLS]) for r in ordered]

    async def _claimable(self, queues: list[str]) -> bool:
        """Whether a claim on `queues` may find a job, read without the write lock. Every
        commit wakes every idle worker of the file: without this, each would take the lock to
        find nothing, and a submission arriving meanwhile would wait for it (SQLite's busy
        wait sleeps from 1 ms up)."""
        one = (
            "SELECT 1 FROM (SELECT 1 FROM jobs WHERE state = 'pending' AND cancel_requested = 0 "
            "AND not_before IS NULL AND queue = ? LIMIT 1)"
        )
        due = (  # a retry whose back-off is over: the claim makes it claimable
            "SELECT 1 FROM (SELECT 1 FROM jobs INDEXED BY jobs_delayed WHERE state = 'pending' "
            "AND not_before IS NOT NULL AND not_before <= ? LIMIT 1)"
        )
        sql = " UNION ALL ".join([one] * len(queues) + [due]) + " LIMIT 1"
        return bool(await self._db.read(sql, (*queues, self.clock.lease_ms())))

    async def renew(
        self,
        worker_id: str,
        leases: dict[str, tuple[str, Progress | None]],
        lease_seconds: float,
    ) -> dict[str, Renewal]:
        now = self.clock.wall_ms()
        until = self.clock.lease_ms() + int(lease_seconds * 1000)

        def renew(db: sqlite3.Connection) -> dict[str, Renewal]:
            out: dict[str, Renewal] = {}
            for job_id, (token, progress) in leases.items():
                rows = db.execute(
                    "UPDATE jobs SET lease_until = :until, updated_at = :now, "
                    "progress = coalesce(:fraction, progress), "
                    "metrics = coalesce(:metrics, metrics), "
                    "history = coalesce(:history, history), "
                    "started_at = CASE WHEN :started THEN coalesce(started_at, :now) "
                    f"ELSE started_at END, {LOG_APPEND} "
                    "WHERE id = :id AND token = :token AND state = 'running' RETURNING 1",
                    progress_params(progress)
                    | {"until": until, "now": now, "log_keep": self.log_keep_chars}
                    | {"id": job_id, "token": token},
                ).fetchall()
                if rows:
                    out[job_id] = Renewal.OK
                    continue
                rows = db.execute(
                    "SELECT 1 FROM jobs WHERE id = ? AND token = ? AND state = 'cancelled'",
                    (job_id, token),
                ).fetchall()
                out[job_id] = Renewal.CANCEL if rows else Renewal.LOST
            db.execute("UPDATE workers SET last_seen = ? WHERE worker_id = ?", (now, worker_id))
            return out

        return await self._db.write(renew, durable=False)

    async def finish_many(self, finishes: Sequence[Finish]) -> list[bool]:
        if not finishes:
            return []
        now = self.clock.wall_ms()

        def finish(db: sqlite3.Connection) -> list[bool]:
            out: list[bool] = []
            for f in finishes:
                rows = db.execute(
                    "UPDATE jobs SET state = 'completed', result = ?, log = coalesce(?, log), "
                    "error = NULL, progress = 1.0, finished_at = ?, updated_at = ?, token = NULL, "
                    # A job whose start no renewal reported yet ran between two of them.
                    "lease_until = NULL, started_at = coalesce(started_at, ?) "
                    "WHERE id = ? AND token = ? AND state = 'running' RETURNING 1",
                    (compact_json(f.result), f.log, now, now, now, f.job_id, f.token),
                ).fetchall()
                if rows and f.model is not None:
                    insert_model(db, f.model)
                out.append(bool(rows))
            return out

        return await self._db.write(finish)  # one transaction, one fsync, for all of them

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
        now = self.clock.wall_ms()
        # Back to pending (seq unchanged: it keeps its FIFO place) on a retry with attempts
        # left, or on one not counted (its attempt undone); otherwise failed. `error` is kept
        # either way, as the last error. SET reads the row as it was before the update.
        back = "(:retry AND (NOT :counted OR attempt < max_attempts))"
        retry_at = f"CASE WHEN {back} AND :counted THEN {RETRY_AT} END"
        rows = await self._db.write(
            lambda db: db.execute(
                "UPDATE jobs SET error = :error, log = coalesce(:log, log), updated_at = :now, "
                "token = NULL, lease_until = NULL, "
                "fail_reason = CASE WHEN :counted THEN :reason END, "
                f"state = CASE WHEN {back} THEN 'pending' ELSE 'failed' END, "
                f"owner = CASE WHEN {back} THEN NULL ELSE owner END, "
                f"started_at = CASE WHEN {back} THEN NULL ELSE started_at END, "
                f"progress = CASE WHEN {back} THEN 0 ELSE progress END, "
                f"finished_at = CASE WHEN {back} THEN NULL ELSE :now END, "
                f"attempt = CASE WHEN {back} AND NOT :counted THEN attempt - 1 ELSE attempt END, "
                f"not_before = {retry_at} "
                "WHERE id = :id AND token = :token AND state = 'running' RETURNING 1",
                {
                    **self._backoff_params(),
                    "error": error_text(error),
                    "log": log,
                    "now": now,
                    "retry": retry,
                    "counted": count_attempt,
                    "reason": FailureReason(reason).value,
                    "id": job_id,
                    "token": token,
                },
            ).fetchall()
        )
        return bool(rows)

    async def rescue_expired(self) -> list[tuple[str, State]]:
        now, due_at = self.clock.wall_ms(), self.clock.lease_ms()
        spent = (
            "(attempt >= max_attempts OR (:max_stalls IS NOT NULL AND stalls + 1 > :max_stalls))"
        )
        # Every worker and the API call this every few seconds: look before taking the write
        # lock. INDEXED BY: without ANALYZE statistics the planner prefers an index on state
        # (state='running'), a scan of every running job, to this range seek.
        due = "FROM jobs INDEXED BY jobs_lease WHERE state = 'running' AND lease_until < :due"
        await self._trim()
        if not await self._db.read(f"SELECT 1 {due} LIMIT 1", {"due": due_at}):
            return []
        # Clearing token and owner fences the lost worker: its renew answers LOST and its
        # finish changes nothing. (In UPDATE, every right-hand side sees the old row.)
        rows = await self._db.write(
            lambda db: db.execute(
                "UPDATE jobs INDEXED BY jobs_lease SET stalls = stalls + 1, token = NULL, "
                "owner = NULL, lease_until = NULL, updated_at = :now, fail_reason = 'lost', "
                f"state = CASE WHEN {spent} THEN 'failed' ELSE 'pending' END, "
                f"error = CASE WHEN {spent} "
                "THEN 'worker lost: lease expired after ' || attempt || ' attempt(s)' "
                "ELSE 'worker lost: lease expired on attempt ' || attempt || ', requeued' END, "
                f"finished_at = CASE WHEN {spent} THEN :now ELSE NULL END, "
                f"started_at = CASE WHEN {spent} THEN started_at ELSE NULL END, "
                f"progress = CASE WHEN {spent} THEN progress ELSE 0 END, "
                f"not_before = CASE WHEN {spent} THEN NULL ELSE {RETRY_AT} END "
                "WHERE state = 'running' AND lease_until < :due RETURNING id, state",
                {
                    "now": now,
                    "due": due_at,
                    "max_stalls": self.max_stalls,
                    **self._backoff_params(),
                },
            ).fetchall(),
            durable=False,
        )
        return [(job_id, State(state)) for job_id, state in rows]

    async def _trim(self) -> None:
        """Retention, a batch at a time, at most every TRIM_INTERVAL seconds per process."""
        if not (self.retain_jobs or self.retain_ms) or time.monotonic() < self._next_trim:
            return
        self._next_trim = time.monotonic() + TRIM_INTERVAL
        await self._db.write(
            lambda db: upkeep.trim_finished(
                db, self.retain_jobs, self.retain_ms, self.clock.wall_ms()
            ),
            durable=False,
        )

    async def forget_unused_models(self, unused_ms: int, limit: int) -> list[ModelRecord]:
        records = await self._db.write(
            lambda db: upkeep.forget_unused_models(db, self.clock.wall_ms() - unused_ms, limit)
        )
        return [ModelRecord.model_validate_json(r) for r in records]

    def _backoff_params(self) -> dict[str, int]:
        backoff = self.retry_backoff
        return {
            "base_ms": backoff.base_ms,
            "max_ms": backoff.max_ms,
            "lease_now": self.clock.lease_ms(),
        }
