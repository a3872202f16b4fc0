"""One submission's statements, run inside a write transaction the caller holds (the group
commit of database.py: several submissions, one transaction)."""

from __future__ import annotations

import sqlite3

from aijobs.jobs import Job, JobType, NewJob, PendingLimits, new_job_id
from aijobs.store.base import compact_json, first_submission, model_not_found
from aijobs.store.sqlite import upkeep
from aijobs.store.sqlite.schema import COLUMNS, decode_job


def insert_job(
    db: sqlite3.Connection,
    job: NewJob,
    idempotency_key: str | None,
    limits: PendingLimits,
    now: int,
    require_model: bool = False,
) -> Job:
    """The new pending job, or the one `idempotency_key` already names; QueueFull past a limit,
    ModelNotFound when `require_model` and its model_id names no stored model.

    Every refusal is raised before the first write, and the checks read inside the same
    transaction as the insert: no other writer adds a job between a count and this insert."""
    if idempotency_key is not None:
        rows = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE idem = ?", (idempotency_key,))
        for row in rows:
            return first_submission(decode_job(row), job, idempotency_key)
    if (
        require_model
        and not db.execute("SELECT 1 FROM models WHERE model_id = ?", (job.model_id,)).fetchall()
    ):
        raise model_not_found(str(job.model_id))
    upkeep.check_pending_limits(db, job, limits)
    if job.job_type == JobType.INFERENCE and job.model_id is not None:
        db.execute(  # its last use, for retention (AIJOBS_RETAIN_MODELS_SECONDS)
            "UPDATE models SET last_used = ? WHERE model_id = ?", (now, job.model_id)
        )
    rows = db.execute(
        "INSERT INTO jobs (id, job_type, queue, state, payload, model_type, model_id, "
        "description, priority, max_attempts, timeout_seconds, created_at, updated_at, "
        "idem, principal) "
        f"VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}",
        (
            new_job_id(),
            job.job_type.value,
            job.queue,
            compact_json(job.payload),
            job.model_type,
            job.model_id,
            job.description,
            job.priority,
            job.max_attempts,
            job.timeout_seconds,
            now,
            now,
            idempotency_key,
            job.principal,
        ),
    )
    (row,) = rows.fetchall()
    return decode_job(row)
