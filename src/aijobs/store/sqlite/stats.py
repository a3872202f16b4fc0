"""The SQLite store's metrics (store/stats.py) and queue positions.

The counters live in the ``job_stats`` table, kept by triggers on ``jobs``: every transition
that counts (an insert, an end, a first start, a failed attempt) is counted inside the very
transaction that makes it, whichever code path makes it. The reason of a failed attempt is the
one thing a trigger cannot know: fail(), rescue_expired() and cancel() write it to the job's
``fail_reason`` in the same UPDATE (NULL: not a failure, e.g. a hand-back on shutdown).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aijobs.store.base import job_not_found
from aijobs.store.sqlite.clock import StoreClock
from aijobs.store.stats import BUCKET_BOUNDS_MS, SUM_LABEL, JobStats, QueuePosition

if TYPE_CHECKING:  # database.py imports the schema, which imports STATS_SCHEMA from here
    from aijobs.store.sqlite.database import Database


def _bucket(ms: str) -> str:
    """SQL: the label of the histogram bucket an observation of `ms` falls in (stats.bucket_of)."""
    whens = " ".join(f"WHEN {ms} <= {b} THEN '{i}'" for i, b in enumerate(BUCKET_BOUNDS_MS))
    return f"(CASE {whens} ELSE '{len(BUCKET_BOUNDS_MS)}' END)"


def _add(metric: str, job_type: str, label: str, value: str, when: str = "true") -> str:
    """SQL: add `value` to a row of job_stats (for NEW's queue), when `when` holds."""
    return (
        "INSERT INTO job_stats (metric, job_type, queue, label, value) "
        f"SELECT '{metric}', {job_type}, new.queue, {label}, {value} WHERE {when} "
        "ON CONFLICT (metric, job_type, queue, label) DO UPDATE SET value = value + excluded.value;"
    )


def _observe(metric: str, job_type: str, ms: str, when: str = "true") -> str:
    """SQL: one observation of `ms` in a histogram: its bucket's count and the sum."""
    ms = f"max(0, {ms})"
    return (
        _add(metric, job_type, _bucket(ms), "1", when)
        + "\n    "
        + _add(metric, job_type, f"'{SUM_LABEL}'", ms, when)
    )


_RUN_MS = "new.finished_at - new.started_at"
_WAIT_MS = "new.started_at - new.created_at"

STATS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS job_stats (
    metric   TEXT    NOT NULL,  -- submitted, finished, failure, wait, run (store/stats.py)
    job_type TEXT    NOT NULL,  -- '' where it is no label
    queue    TEXT    NOT NULL,
    label    TEXT    NOT NULL,  -- the status, the reason, a bucket's index or 'sum'; or ''
    value    INTEGER NOT NULL,
    PRIMARY KEY (metric, job_type, queue, label)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS jobs_stat_submitted AFTER INSERT ON jobs BEGIN
    {_add("submitted", "new.job_type", "''", "1")}
END;
CREATE TRIGGER IF NOT EXISTS jobs_stat_finished AFTER UPDATE OF state ON jobs
    WHEN new.state IN ('completed', 'failed', 'cancelled')
     AND old.state IN ('pending', 'running') BEGIN
    {_add("finished", "new.job_type", "new.state", "1")}
    {_observe("run", "new.job_type", _RUN_MS, "new.started_at IS NOT NULL")}
END;
CREATE TRIGGER IF NOT EXISTS jobs_stat_failure AFTER UPDATE OF state ON jobs
    WHEN old.state = 'running' AND new.state IN ('pending', 'failed', 'cancelled')
     AND new.fail_reason IS NOT NULL BEGIN
    {_add("failure", "''", "new.fail_reason", "1")}
END;
-- a job's first start only: a retry's start would count its wait twice
CREATE TRIGGER IF NOT EXISTS jobs_stat_started AFTER UPDATE OF started_at ON jobs
    WHEN old.started_at IS NULL AND new.started_at IS NOT NULL AND new.attempt = 1 BEGIN
    {_observe("wait", "''", _WAIT_MS)}
END;
"""

# The claimable jobs a claim takes before a job (priority desc, then seq), over jobs_claimable:
# by priority first, then the same priority's older ones (two range seeks, not a scan).
_CLAIMABLE = (
    "SELECT count(*) FROM jobs WHERE state = 'pending' AND cancel_requested = 0 "
    "AND not_before IS NULL AND queue = :queue AND job_type IN ('training', 'inference') AND "
)
_POSITION = (
    f"SELECT ({_CLAIMABLE} priority > :priority), "
    f"({_CLAIMABLE} priority = :priority AND seq < :seq), "
    "(SELECT count(*) FROM jobs WHERE state = 'pending' AND not_before IS NOT NULL "
    "AND queue = :queue AND (priority > :priority OR (priority = :priority AND seq < :seq)))"
)

# The claimable jobs of a queue, over jobs_claimable (queue, job_type, priority desc, seq): the
# oldest of each job type and priority is the first of its band, so the oldest of all is the
# oldest band head, reached by one seek per band (the priorities in use), never a scan.
_CLAIMABLE_OF_TYPE = (
    "FROM jobs WHERE state = 'pending' AND cancel_requested = 0 AND not_before IS NULL "
    "AND queue = :queue AND job_type = band.job_type"
)
_OLDEST_WAITING = f"""
WITH RECURSIVE band(job_type, priority) AS (
    SELECT kind, (SELECT max(priority) {_CLAIMABLE_OF_TYPE.replace("band.job_type", "kind")})
    FROM (SELECT 'training' AS kind UNION ALL SELECT 'inference')
    UNION ALL
    SELECT job_type, (SELECT max(priority) {_CLAIMABLE_OF_TYPE} AND priority < band.priority)
    FROM band WHERE priority IS NOT NULL
)
SELECT created_at FROM jobs WHERE seq = (
    SELECT min((SELECT min(seq) {_CLAIMABLE_OF_TYPE} AND priority = band.priority))
    FROM band WHERE priority IS NOT NULL
)
"""


class SQLiteStats:
    _db: Database
    clock: StoreClock

    async def job_stats(self) -> JobStats:
        rows = await self._db.read("SELECT metric, job_type, queue, label, value FROM job_stats")
        return JobStats.from_rows(
            (str(a), str(b), str(c), str(d), int(e)) for a, b, c, d, e in rows
        )

    async def queue_position(self, job_id: str) -> QueuePosition | None:
        rows = await self._db.read(
            "SELECT state, started_at, owner, queue, priority, seq, not_before FROM jobs "
            "WHERE id = ?",
            (job_id,),
        )
        if not rows:
            raise job_not_found(job_id)
        state, started_at, owner, queue, priority, seq, not_before = rows[0]
        if state == "running" and started_at is None:
            return QueuePosition(claimed_by=owner)
        if state != "pending":
            return None
        params = {"queue": queue, "priority": priority, "seq": seq}
        (higher, older, backing_off), *_ = await self._db.read(_POSITION, params)
        retry_in = None
        if not_before is not None:
            retry_in = max(0.0, (not_before - self.clock.lease_ms()) / 1000.0)
        return QueuePosition(int(higher) + int(older), int(backing_off), retry_in)

    async def oldest_waiting(self, queues: Sequence[str]) -> dict[str, float]:
        found = {}
        for queue in dict.fromkeys(queues):
            rows = await self._db.read(_OLDEST_WAITING, {"queue": queue})
            if rows:
                found[queue] = rows[0][0] / 1000.0
        return found
