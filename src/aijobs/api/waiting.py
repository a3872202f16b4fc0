"""Why a pending job waits: its place in its queue (JobStore.queue_position) and the live
workers serving that queue, said in a sentence as well (the `waiting` of a job's status)."""

from __future__ import annotations

from aijobs import errors
from aijobs.api.schemas import Waiting
from aijobs.jobs import Job, State
from aijobs.settings import Settings
from aijobs.store import JobStore


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


async def waiting(store: JobStore, settings: Settings, job: Job) -> Waiting | None:
    """None for a job that does not show pending (or is gone by now)."""
    if job.state is not State.PENDING:
        return None
    try:
        position = await store.queue_position(job.id)
    except errors.JobNotFound:  # forgotten since it was read (retention)
        return None
    if position is None:  # it started or ended since it was read
        return None
    workers = [
        w for w in await store.live_workers(settings.worker_ttl_seconds) if job.queue in w.queues
    ]
    idle = sum(max(0, w.concurrency - w.running) for w in workers)
    found = Waiting(
        jobs_ahead=position.jobs_ahead,
        retried_jobs_ahead=position.backing_off_ahead,
        retry_in_seconds=position.retry_in,
        claimed=position.claimed_by is not None,
        workers=len(workers),
        idle_slots=idle,
        busy_with=sorted({job_id for w in workers for job_id in w.running_jobs}),
        reason="",
    )
    found.reason = reason(job.queue, found)
    return found


def reason(queue: str, w: Waiting) -> str:
    if w.claimed:
        return "a worker took it: it starts when the jobs that worker took before it are done"
    parts = []
    if w.retry_in_seconds is not None:
        parts.append(
            "retried after a failed attempt: it waits out its back-off, "
            f"{w.retry_in_seconds:.0f}s more"
        )
    ahead = _plural(w.jobs_ahead, "job") + " ahead" if w.jobs_ahead else "next in line"
    if w.retried_jobs_ahead:
        ahead += f" (and {w.retried_jobs_ahead} retried, waiting out their back-off)"
    parts.append(ahead)
    if not w.workers:
        parts.append(f"no worker serves {queue}")
    elif w.idle_slots:
        parts.append(f"{_plural(w.workers, 'worker')}, {_plural(w.idle_slots, 'idle slot')}")
    elif w.busy_with:
        parts.append(f"{_plural(w.workers, 'worker')}, busy with {_some(w.busy_with)}")
    else:
        parts.append(f"{_plural(w.workers, 'worker')}, all busy")
    return "; ".join(parts)


def _some(job_ids: list[str], shown: int = 3) -> str:
    if len(job_ids) > shown:
        return f"{', '.join(job_ids[:shown])} and {len(job_ids) - shown} more"
    return ", ".join(job_ids)
