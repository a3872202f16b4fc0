"""Submit, inspect, list and cancel jobs."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse

from aijobs import datapaths, errors, model_types, routing
from aijobs.api import bounds
from aijobs.api.auth import CallerDep, own_model
from aijobs.api.deps import HintsDep, RuntimesDep, SettingsDep, StoreDep
from aijobs.api.errors import error_responses
from aijobs.api.hints import Hints
from aijobs.api.logview import LogView
from aijobs.api.ratelimit import ReadLimit, SubmitLimit
from aijobs.api.schemas import (
    InferenceRequest,
    JobList,
    JobStatus,
    JobSummary,
    SubmitResponse,
    TrainingRequest,
    iso,
)
from aijobs.api.waiting import waiting
from aijobs.jobs import Job, JobType, NewJob, PendingLimits, State
from aijobs.settings import Settings

router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(max_length=128, description="job_ + a UUID")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retried POST with the same key returns the first job.",
    ),
]


async def _accepted(hints: Hints, job: Job) -> SubmitResponse:
    # Both hints come from this process's short-lived copies (api/hints.py): up to a second or
    # a few old, and no store read per submission.
    history = await hints.recent_durations(job.job_type, job.model_type, job.queue)
    workers = [w for w in await hints.live_workers() if job.queue in w.queues]
    message = None
    if not workers:
        message = f"no live worker serves queue {job.queue!r} yet; the job waits until one starts"
    elif job.job_type is JobType.TRAINING and not any(
        w.model_types is None or job.model_type in w.model_types for w in workers
    ):
        message = (
            f"no live worker on queue {job.queue!r} declares model_type {job.model_type!r}: "
            "a worker there without a runtime plugin for it fails the job, saying what it trains"
        )
    return SubmitResponse(
        job_id=job.id,
        created_at=iso(job.created_at) or "",
        estimated_duration=model_types.estimate(
            history, job.model_type, job.job_type is JobType.INFERENCE
        ),
        queue=job.queue,
        queue_has_worker=bool(workers),
        message=message,
    )


def pending_limits(settings: Settings) -> PendingLimits:
    """The pending-job limits a submission is checked against in the store's submit step."""
    return PendingLimits(
        per_queue=settings.max_pending_per_queue or None,
        per_principal=settings.max_pending_per_principal or None,
    )


@router.post(
    "/jobs/training",
    response_model=SubmitResponse,
    responses=error_responses(400, 413, 422, 429, 503),
    summary="Submit a training job",
    dependencies=[SubmitLimit],
)
async def submit_training(
    body: TrainingRequest,
    store: StoreDep,
    settings: SettingsDep,
    who: CallerDep,
    runtimes: RuntimesDep,
    hints: HintsDep,
    idempotency_key: IdempotencyKey = None,
) -> SubmitResponse:
    # A model type outside the routing table goes to the default queue (the API reference's
    # rule 3), where a runtime plugin may declare it.
    bounds.check_training(body, settings, runtimes)
    queue = routing.resolve(body.model_type, body.requires_gpu, body.framework_override)
    if all(root.is_dir() for root in settings.roots):
        # The API sees the data roots: refuse a bad path now rather than fail the job later.
        try:
            datapaths.resolve_data_path(body.data_path, settings.roots)
        except errors.InvalidDataPath as exc:  # it names the data roots: not to everyone
            raise errors.InvalidDataPath(who.redact(exc.detail)) from None
    job = await store.submit(
        NewJob(
            job_type=JobType.TRAINING,
            queue=queue,
            payload=body.model_dump(exclude={"priority", "timeout_seconds"}),
            model_type=body.model_type,
            description=body.description,
            priority=body.priority,
            max_attempts=settings.max_attempts,
            timeout_seconds=body.timeout_seconds,
            principal=who.principal,
        ),
        idempotency_key=who.idempotency_key(idempotency_key),
        limits=pending_limits(settings),
    )
    return await _accepted(hints, job)


@router.post(
    "/jobs/inference",
    response_model=SubmitResponse,
    responses=error_responses(400, 403, 404, 413, 422, 429, 503),
    summary="Submit an inference job",
    dependencies=[SubmitLimit],
)
async def submit_inference(
    body: InferenceRequest,
    store: StoreDep,
    settings: SettingsDep,
    who: CallerDep,
    hints: HintsDep,
    idempotency_key: IdempotencyKey = None,
) -> SubmitResponse:
    bounds.check_inference(body, settings)
    # The model's record from this process's short-lived copy (api/hints.py); that the model
    # still exists, the submit checks in its own atomic step (require_model).
    model = await own_model(hints.model, who, body.model_id)
    job = await store.submit(
        NewJob(
            job_type=JobType.INFERENCE,
            queue=model.queue,  # the framework that trained the model serves it
            payload=body.model_dump(exclude={"priority", "timeout_seconds"}),
            model_type=model.model_type,
            model_id=model.model_id,
            priority=body.priority,
            max_attempts=settings.max_attempts,
            timeout_seconds=body.timeout_seconds,
            principal=who.principal,
        ),
        idempotency_key=who.idempotency_key(idempotency_key),
        limits=pending_limits(settings),
        require_model=True,
    )
    return await _accepted(hints, job)


MAX_WAIT_SECONDS = 60.0
WAIT_SLICE_SECONDS = 0.5  # how often a held long-poll looks for a shutdown or a gone client
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Long-poll: answer as soon as the job is completed, failed or cancelled, "
        f"or after this many seconds (at most {MAX_WAIT_SECONDS:g}) with its current status. "
        "0 answers at once.",
    ),
]


def server_stopping() -> bool:
    """Whether the uvicorn server running this app was told to stop (SIGTERM or Ctrl-C).

    Uvicorn lets in-flight requests finish before it exits, so a held long-poll would delay its
    shutdown by up to its wait. Uvicorn's signal handler is a method of its Server, whose
    `should_exit` says so; under any other server this is simply False.
    """
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return getattr(server, "should_exit", False) is True


@router.get(
    "/jobs/{job_id}/status",
    response_model=JobStatus,
    responses=error_responses(403, 404, 422, 429, 503),
    summary="A job's status",
    dependencies=[ReadLimit],
)
async def job_status(
    job_id: JobId,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    who: CallerDep,
    wait: Wait = 0,
) -> JobStatus:
    job = who.job(await store.get(job_id))
    if wait > 0 and not job.terminal:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not job.terminal and (left := deadline - loop.time()) > 0:
            job = await store.wait_terminal(job_id, min(WAIT_SLICE_SECONDS, left))
            if server_stopping() or await request.is_disconnected():
                break  # shutting down, or nobody is listening any more: stop holding
    return JobStatus.of(who.job(job), await waiting(store, settings, job))


LOG_PAGE_MAX = 1_048_576  # characters of a log one answer carries at most


@router.get(
    "/jobs/{job_id}/logs",
    response_class=PlainTextResponse,
    responses=error_responses(403, 404, 422, 429, 503),
    summary="A job's output",
    dependencies=[ReadLimit],
)
async def job_logs(
    job_id: JobId,
    store: StoreDep,
    who: CallerDep,
    response: Response,
    offset: Annotated[
        int,
        Query(ge=0, le=2**62, description="First character of the page (an absolute offset)"),
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=LOG_PAGE_MAX, description="Characters in the page at most")
    ] = LOG_PAGE_MAX,
    tail: Annotated[
        int | None,
        Query(ge=1, le=LOG_PAGE_MAX, description="The last this many characters instead"),
    ] = None,
) -> str:
    """The job's captured stdout/stderr, a page at a time, readable while the job runs.
    Offsets are absolute: they count every character the job wrote, also those dropped to keep
    the log's tail. X-Log-Length gives the whole log's length, X-Log-Offset where this page
    starts and X-Log-Next-Offset where the next one does."""
    view = LogView.of(who.job(await store.get(job_id)))
    offset = view.clamp(view.total - tail if tail is not None else offset)
    page, start, end = view.cut(offset, offset + (tail or limit), who)
    response.headers["X-Log-Length"] = str(view.total)
    response.headers["X-Log-Offset"] = str(start)
    response.headers["X-Log-Next-Offset"] = str(end)
    return page


@router.delete(
    "/jobs/{job_id}",
    response_model=JobStatus,
    responses=error_responses(400, 403, 404, 422, 429, 503),
    summary="Cancel a job",
    dependencies=[SubmitLimit],
)
async def cancel_job(job_id: JobId, store: StoreDep, who: CallerDep) -> JobStatus:
    if not who.admin:  # a job's principal never changes: checked before the cancel, once
        who.job(await store.get(job_id))
    return JobStatus.of(who.job(await store.cancel(job_id)))


@router.get(
    "/jobs",
    response_model=JobList,
    response_model_exclude_unset=True,  # a row leaves out the fields that do not apply to it
    responses=error_responses(422, 429, 503),
    summary="List jobs, newest first",
    dependencies=[ReadLimit],
)
async def list_jobs(
    store: StoreDep,
    who: CallerDep,
    status: Annotated[State | None, Query(description="Filter by job status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JobList:
    jobs, total = await store.list_jobs(status, limit, offset, principal=who.scope)
    return JobList(jobs=[JobSummary.of(j) for j in jobs], total=total, limit=limit, offset=offset)
