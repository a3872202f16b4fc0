"""The SQLite store's limits and upkeep: pending-job limits checked in submit's transaction,
rate-limit windows, and the retention of finished jobs (what the Redis scripts do as they go,
done here in small batches) and of unused models."""

from __future__ import annotations

import sqlite3

from aijobs.jobs import NewJob, PendingLimits, RateDecision
from aijobs.store.base import queue_full
from aijobs.store.sqlite.schema import SHOWN_STATE

TRIM_BATCH = 500  # finished jobs deleted per pass at most: a pass never holds the lock long


def check_pending_limits(db: sqlite3.Connection, job: NewJob, limits: PendingLimits) -> None:
    """Inside submit's write transaction: no other writer adds a job between this count and
    the insert. Each limit of PendingLimits is one check here."""
    if limits.per_queue is not None:
        rows = db.execute(
            "SELECT n FROM counts WHERE queue = ? AND state = 'pending'", (job.queue,)
        )
        if sum(n for (n,) in rows) >= limits.per_queue:
            raise queue_full(job, "per_queue", limits.per_queue)
    if limits.per_principal is not None and job.principal is not None:
        (n,), *_ = db.execute(  # over the jobs_principal_shown index
            f"SELECT count(*) FROM jobs WHERE principal = ? AND {SHOWN_STATE} = 'pending'",
            (job.principal,),
        )
        if n >= limits.per_principal:
            raise queue_full(job, "per_principal", limits.per_principal)


def take_tokens(
    db: sqlite3.Connection, key: str, limit: int, window_ms: int, now: int
) -> RateDecision:
    """One request counted against `key`'s window, inside the caller's write transaction
    (BEGIN IMMEDIATE: every process counting against the file is serialized on it)."""
    db.execute("DELETE FROM rate_windows WHERE window_end <= ?", (now,))
    rows = list(db.execute("SELECT used, window_end FROM rate_windows WHERE key = ?", (key,)))
    used, end = rows[0] if rows else (0, now - now % window_ms + window_ms)
    if end > now + window_ms:  # left by a wall clock that has since stepped back: start over
        used, end = 0, now - now % window_ms + window_ms
    reset = (end - now) / 1000.0
    if used >= limit:
        return RateDecision(False, limit, 0, reset)
    db.execute(
        "INSERT INTO rate_windows (key, window_end, used) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET window_end = excluded.window_end, used = excluded.used",
        (key, end, used + 1),
    )
    return RateDecision(True, limit, limit - used - 1, reset)


def trim_finished(db: sqlite3.Connection, retain_jobs: int, retain_ms: int, now: int) -> int:
    """Delete the oldest finished jobs past `retain_jobs` (0: no limit) or finished more than
    `retain_ms` ago (0: no limit), at most TRIM_BATCH; returns how many were deleted."""
    oldest = (
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_finished "
        "WHERE state IN ('completed', 'failed', 'cancelled') AND finished_at < ? "
        "ORDER BY finished_at LIMIT ?)"
    )
    deleted = 0
    if retain_jobs > 0:
        (finished,), *_ = db.execute(
            "SELECT coalesce(sum(n), 0) FROM counts "
            "WHERE state IN ('completed', 'failed', 'cancelled')"
        )
        if (excess := int(finished) - retain_jobs) > 0:
            cursor = db.execute(oldest, (2**62, min(excess, TRIM_BATCH)))
            deleted += max(0, cursor.rowcount)
    if retain_ms > 0:
        cursor = db.execute(oldest, (now - retain_ms, TRIM_BATCH))
        deleted += max(0, cursor.rowcount)
    return deleted


def forget_unused_models(db: sqlite3.Connection, unused_before: int, limit: int) -> list[str]:
    """Delete up to `limit` models trained and last used before `unused_before` (ms), the
    oldest first; returns their records. Over models_created: a model used since is skipped."""
    rows = db.execute(
        "DELETE FROM models WHERE model_id IN (SELECT model_id FROM models "
        "INDEXED BY models_created WHERE created_at < :before "
        "AND (last_used IS NULL OR last_used < :before) ORDER BY created_at LIMIT :limit) "
        "RETURNING record",
        {"before": unused_before, "limit": limit},
    )
    return [record for (record,) in rows]
