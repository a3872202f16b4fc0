"""Job records and their state machine, shared by the API, the stores and the workers."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, Field


class State(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
ACTIVE = frozenset({State.PENDING, State.RUNNING})


def shown_state(state: State | str, started_at: object) -> State:
    """The state a job shows its owner: a job claimed but not started yet (an inference job
    queued in its worker behind another, its lease held) is still pending to them; its stored
    state stays running, which is what the claim, the lease and the fencing go by."""
    if state == State.RUNNING and started_at is None:
        return State.PENDING
    return State(state)


class JobType(StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"


class Renewal(StrEnum):
    """What a lease renewal tells the worker that holds the job."""

    OK = "ok"
    CANCEL = "cancel"  # the user cancelled: kill the child, the job is already cancelled
    LOST = "lost"  # the lease is gone (rescued, or finished by someone else): kill, never write


def new_job_id() -> str:
    return f"job_{uuid.uuid4()}"


def now() -> float:
    return time.time()


class NewJob(BaseModel):
    """What the API hands the store on submission."""

    job_type: JobType
    queue: str
    payload: dict[str, Any]
    model_type: str | None = None
    model_id: str | None = None
    description: str | None = None
    priority: int = 0
    max_attempts: int = 3
    timeout_seconds: float | None = None
    principal: str | None = None  # who submitted it; None when the API runs without auth


class Job(BaseModel):
    id: str
    job_type: JobType
    queue: str
    state: State
    payload: dict[str, Any]
    model_type: str | None = None
    model_id: str | None = None
    description: str | None = None
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 3
    timeout_seconds: float | None = None
    progress: float = 0.0
    metrics: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    principal: str | None = None  # who submitted it (None: anonymous, auth off)
    owner: str | None = None  # the worker holding its claim
    cancel_requested: bool = False
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    # Characters the job has written to its log in all its runs: the kept `log` is the tail of
    # them, so its first character is at offset log_length - len(log) (offsets stay absolute).
    log_length: int = 0
    log: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


# The fields a store returns with every job, in Job's order: all but `log`, which can be large
# and is read only when one job is asked for.
JOB_FIELDS: tuple[str, ...] = tuple(name for name in Job.model_fields if name != "log")
# What a listing reads of each job: JOB_FIELDS without the ones a user or a run can make large
# (a page of a thousand jobs stays small whatever their payloads, results and histories hold).
LARGE_FIELDS = frozenset({"payload", "description", "metrics", "history", "result"})
ROW_FIELDS: tuple[str, ...] = tuple(name for name in JOB_FIELDS if name not in LARGE_FIELDS)


class Claim(BaseModel):
    """A job handed to one worker, with the fencing token every later write must present."""

    job: Job
    token: str


class Progress(BaseModel):
    """A progress report carried by a lease renewal (fenced like every other write)."""

    fraction: float | None = None
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    # The job's run has begun: an inference job waits in its worker's queue after the claim,
    # and is told apart as pending until then (see shown_state).
    started: bool = False
    # Log text written since the last renewal, starting at character `log_at` of the job's log
    # (absolute: it counts the characters of every run). The store appends what it lacks of it
    # (a retried renewal appends nothing twice) and keeps the tail, LOG_KEEP_CHARS at most.
    log: str | None = None
    log_at: int = 0


LOG_KEEP_CHARS = 65_536  # the default of AIJOBS_LOG_KEEP_CHARS


def log_start(job: Job) -> int:
    """The offset of the first character of `job.log` in the job's whole log (the part
    before it was dropped to keep the tail). A log a store was handed whole (finish or fail
    with `log`) counts from 0."""
    return max(0, job.log_length - len(job.log or ""))


def log_total(job: Job) -> int:
    """The length of the job's whole log: the offset after its last character."""
    return max(job.log_length, len(job.log or ""))


class WorkerInfo(BaseModel):
    worker_id: str
    host: str
    pid: int
    queues: list[str]
    # What its runtimes train there; None from a worker that does not say (an older version).
    model_types: list[str] | None = None
    concurrency: int = 1
    running: int = 0
    running_jobs: list[str] = Field(default_factory=list)  # as of its last heartbeat
    started_at: float
    last_seen: float
    # What it runs on: the GPUs it hands out (none: the CPU), and its frameworks' versions.
    gpus: list[str] = Field(default_factory=list)
    frameworks: dict[str, str] = Field(default_factory=dict)


class ModelRecord(BaseModel):
    model_id: str
    framework: str
    framework_version: str | None = None
    queue: str
    model_type: str
    path: str
    job_id: str
    sha256: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    principal: str | None = None  # its training job's principal


class PendingLimits(NamedTuple):
    """Ceilings a submission is checked against inside the store's submit step (so that two
    API processes cannot overshoot together); None means no limit."""

    per_queue: int | None = None  # pending jobs in the job's queue
    per_principal: int | None = None  # pending jobs of the job's principal (none: no check)


class RateDecision(NamedTuple):
    """What JobStore.take_tokens decided for one request."""

    allowed: bool
    limit: int
    remaining: int  # requests left in the current window
    reset_seconds: float  # until the window ends


class Waiter(NamedTuple):
    """A worker waiting in JobStore.wait_for_work: a store may claim a job for it as the job
    is submitted (see wait_for_work)."""

    worker_id: str
    lease_seconds: float
    max_training: int  # training jobs it has room for (inference jobs: always room for one)
    room: int = 1  # jobs it has room for: what a store may claim for it when work is ready


class Finish(NamedTuple):
    """One job's completion, for JobStore.finish_many (a worker commits several at once)."""

    job_id: str
    token: str
    result: dict[str, Any]
    log: str | None = None
    model: ModelRecord | None = None
