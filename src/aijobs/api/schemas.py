"""Request and response bodies, with the API reference's field names, types and defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from aijobs import routing
from aijobs.jobs import Job, JobType, ModelRecord, State, WorkerInfo


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with a trailing Z, at the API reference's one-second precision."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


MIN_TIMEOUT_SECONDS = 1.0  # a shorter limit would end a job before its worker could start it


def _integral(value: object) -> object:
    """7.0 is the integer 7: JSON has one number type, and JSON Schema's "integer" admits 7.0.
    A fractional number, a string or a boolean still fails the strict integer check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_integral)]


class _Request(BaseModel):
    # Strict: "yes" is not a boolean and 5 is not a model name; unknown fields are typos.
    model_config = ConfigDict(strict=True, extra="forbid")

    priority: Integer = Field(0, ge=-1000, le=1000, description="Higher runs first within a queue.")
    timeout_seconds: float | None = Field(
        None,
        ge=MIN_TIMEOUT_SECONDS,
        le=7 * 24 * 3600,
        description="Wall-clock limit in seconds; default from settings.",
    )


MODEL_TYPE_PATTERN = r"^[A-Za-z0-9_.\-]+$"
NAME_MAX_LENGTH = 64  # a model type's or a framework_override's


class TrainingRequest(_Request):
    model_type: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=MODEL_TYPE_PATTERN)
    data_path: str = Field(min_length=1, max_length=4096)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    description: str | None = Field(None, max_length=10_000)
    requires_gpu: bool = False
    framework_override: str | None = Field(None, max_length=NAME_MAX_LENGTH)


def _override_family(name: str) -> str:
    queue = name if name in routing.QUEUES else routing.OVERRIDE_ALIASES[name][0]
    return routing.QUEUES[queue].framework


def _any_case(name: str) -> str:
    """A pattern for `name` in any letter case (JSON Schema patterns take no flags)."""
    return "".join(
        f"[{c.lower()}{c.upper()}]" if c.isalpha() else ("\\." if c == "." else c) for c in name
    )


def declare_training_routes(spec: dict[str, Any], known_model_types: frozenset[str]) -> None:
    """Say in the OpenAPI document which (model_type, framework_override) pairs are accepted.

    Without an override (or with an empty one) any model type is accepted: one outside the
    routing table goes to the default queue (the known ones are listed as examples). With one, the
    override names a queue or a framework alias, in any case and with surrounding spaces, and a
    model type of the routing table must belong to that framework; any other model type goes to
    the named framework's queue.
    """
    by_family: dict[str, list[str]] = {}
    for name in routing.VALID_OVERRIDES:
        by_family.setdefault(_override_family(name), []).append(name)
    choices: list[dict[str, Any]] = [
        {
            "properties": {
                "model_type": {"examples": sorted(known_model_types)},
                "framework_override": {"enum": [None, ""]},
            }
        }
    ]
    for family, names in sorted(by_family.items()):
        pattern = r"^\s*(?:" + "|".join(_any_case(n) for n in names) + r")\s*$"
        others = sorted(t for t in routing.ROUTES if routing.model_family(t) != family)
        choices.append(
            {
                "required": ["framework_override"],
                "properties": {
                    "framework_override": {"type": "string", "pattern": pattern},
                    "model_type": {"not": {"enum": others}},
                },
            }
        )
    spec["components"]["schemas"]["TrainingRequest"]["anyOf"] = choices


class InferenceRequest(_Request):
    model_id: str = Field(min_length=1, max_length=128)
    input_data: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class _Answer(BaseModel):
    # Every field of an answer is always sent (null when it has no value): say so in the schema.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class SubmitResponse(_Answer):
    job_id: str
    status: Literal["queued"] = "queued"
    created_at: str
    estimated_duration: str
    queue: str
    queue_has_worker: bool
    message: str | None = None


class Waiting(_Answer):
    """Why a pending job has not started: its place in its queue and the workers serving it."""

    jobs_ahead: int = Field(
        description="Claimable jobs of its queue that are taken before it (priority, then age)"
    )
    retried_jobs_ahead: int = Field(
        description="Jobs ranked before it that wait out a retry's back-off: ahead once due"
    )
    retry_in_seconds: float | None = Field(
        default=None, description="It was retried and waits out its back-off this much longer"
    )
    claimed: bool = Field(
        default=False, description="A worker took it and starts it once its earlier jobs end"
    )
    workers: int = Field(description="Live workers serving its queue")
    idle_slots: int = Field(description="Their free slots (concurrency less the jobs they run)")
    busy_with: list[str] = Field(
        default_factory=list, description="The jobs those workers run, as of their heartbeats"
    )
    reason: str = Field(description="All of this in a sentence")


class JobStatus(_Answer):
    job_id: str
    job_type: JobType
    status: State
    queue: str
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: float
    model_type: str | None = None
    model_id: str | None = None
    description: str | None = None
    attempt: int
    max_attempts: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    result: dict[str, Any] | None = None
    error: str | None = None
    waiting: Waiting | None = Field(
        default=None, description="Why a pending job waits; null for any other job"
    )

    @classmethod
    def of(cls, job: Job, waiting: Waiting | None = None) -> JobStatus:
        return cls(
            job_id=job.id,
            job_type=job.job_type,
            status=job.state,
            queue=job.queue,
            created_at=iso(job.created_at) or "",
            updated_at=iso(job.updated_at) or "",
            started_at=iso(job.started_at),
            finished_at=iso(job.finished_at),
            progress=job.progress,
            model_type=job.model_type,
            # An inference job's model, or the one a training job produced.
            model_id=job.model_id or (job.result or {}).get("model_id"),
            description=job.description,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            metrics=job.metrics,
            history=job.history,
            result=job.result,
            error=job.error,
            waiting=waiting,
        )


class JobSummary(BaseModel):
    """One row of GET /jobs: model_type for a training job, model_id for an inference job, error
    only when the job has one. A field that does not apply is left out of the row (not null), so
    build rows with `of` and serialize them with exclude_unset."""

    job_id: str
    job_type: JobType
    status: State
    created_at: str
    updated_at: str
    queue: str
    progress: float
    model_type: str | None = None
    model_id: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        row = cls(
            job_id=job.id,
            job_type=job.job_type,
            status=job.state,
            created_at=iso(job.created_at) or "",
            updated_at=iso(job.updated_at) or "",
            queue=job.queue,
            progress=job.progress,
        )
        if job.job_type is JobType.TRAINING:
            row.model_type = job.model_type
        else:
            row.model_id = job.model_id
        if job.error:
            row.error = job.error
        return row


class JobList(_Answer):
    jobs: list[JobSummary]
    total: int
    limit: int
    offset: int


class QueueInfo(_Answer):
    queue: str
    label: str
    gpu: bool
    pending: int
    running: int
    oldest_wait_seconds: float | None = Field(
        description="how long the claimable job waiting longest has waited, whatever its "
        "priority (null: none waits; retried jobs waiting out a back-off are not counted)"
    )
    workers: list[str] = Field(description="ids of the live workers serving the queue")
    has_worker: bool


class QueueList(_Answer):
    queues: list[QueueInfo]


class RouteInfo(_Answer):
    """Where a training job with these fields would go (the routing table's answer)."""

    queue: str
    label: str
    gpu: bool
    has_worker: bool = Field(description="whether a live worker serves the queue now")


class LiveWorker(_Answer):
    worker_id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    running_jobs: list[str] = Field(description="the jobs it runs, as of its last heartbeat")
    started_at: str
    last_seen: str
    gpus: list[str] = Field(description="the GPUs it hands out, one per job; none: the CPU")
    frameworks: dict[str, str] = Field(description="its frameworks' versions, by framework")

    @classmethod
    def of(cls, worker: WorkerInfo) -> LiveWorker:
        times = {"started_at": iso(worker.started_at), "last_seen": iso(worker.last_seen)}
        return cls.model_validate(worker.model_dump() | times)


class WorkerList(_Answer):
    workers: list[LiveWorker]


class ModelInfo(_Answer):
    model_id: str
    framework: str
    framework_version: str | None
    queue: str
    model_type: str
    path: str | None = Field(description="where the model lies on the API's host (admins only)")
    job_id: str = Field(description="the training job that made the model")
    sha256: str | None
    metrics: dict[str, Any]
    created_at: str
    size_bytes: int | None = Field(
        None, description="the model's files, where the API's host sees them (else null)"
    )

    @classmethod
    def of(
        cls, model: ModelRecord, with_path: bool = True, size_bytes: int | None = None
    ) -> ModelInfo:
        shown = model.model_dump(exclude={"principal"}) | {"created_at": iso(model.created_at)}
        shown["size_bytes"] = size_bytes
        return cls.model_validate(shown | ({} if with_path else {"path": None}))


class ModelList(_Answer):
    models: list[ModelInfo]
    total: int
    limit: int
    offset: int


class Health(_Answer):
    status: Literal["healthy"] = "healthy"
    timestamp: str
    version: str
    store: str = Field(description="the job store in use: sqlite or redis")


class StoreHealth(_Answer):
    """The store's health: these fields, and the backend's own details beside them."""

    model_config = ConfigDict(extra="allow")  # merged with _Answer's

    status: Literal["healthy", "unhealthy"]
    timestamp: str
    healthy: bool
    store: str = Field(description="the job store in use: sqlite or redis")


class ErrorEnvelope(_Answer):
    error: str
    detail: str
    status_code: int
