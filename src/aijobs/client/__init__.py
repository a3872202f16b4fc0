"""The Python SDK for the aijobs API.

``Client`` (sync) and ``AsyncClient`` (asyncio) return the API's own pydantic models
(``SubmitResponse``, ``JobStatus``, ``JobList`` of ``JobSummary`` rows); ``AIJobClient`` is the
API reference's example client (plain dicts, the API reference's method names) built on ``Client``.

    from aijobs.client import Client

    with Client("http://localhost:8000") as jobs:
        job = jobs.submit_training("random_forest", "/data/tabular_data.csv",
                                   hyperparameters={"n_estimators": 100})
        done = jobs.wait(job.job_id)          # long-poll: returns the moment the job ends
        print(done.status, done.result)
"""

from __future__ import annotations

from aijobs.api.schemas import JobList, JobStatus, JobSummary, SubmitResponse
from aijobs.client._async import AsyncClient
from aijobs.client._core import (
    DEFAULT_URL,
    TERMINAL_STATES,
    APIConnectionError,
    APIError,
    JobEvent,
    NotFoundError,
    WaitTimeout,
    apply_event,
)
from aijobs.client._spec import AIJobClient
from aijobs.client._sync import Client
from aijobs.jobs import State

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_STATES",
    "AIJobClient",
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "Client",
    "JobEvent",
    "JobList",
    "JobStatus",
    "JobSummary",
    "NotFoundError",
    "State",
    "SubmitResponse",
    "WaitTimeout",
    "apply_event",
]
