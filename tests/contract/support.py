"""What the contract tests share: job, model and worker builders, leases, more clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aijobs.jobs import Claim, JobType, ModelRecord, NewJob, WorkerInfo
from aijobs.store.base import JobStore

Factory = Callable[..., JobStore]
SHORT = 0.05  # a lease that expires during the test
EXPIRE = 0.12  # how long to wait for SHORT to have expired
LONG = 60.0


def new(queue: str = "q", priority: int = 0, **kw: Any) -> NewJob:
    kw.setdefault("job_type", JobType.TRAINING)
    kw.setdefault("payload", {"n": 1})
    return NewJob(queue=queue, priority=priority, **kw)


def model(model_id: str, job_id: str, created_at: float | None = None) -> ModelRecord:
    return ModelRecord(
        model_id=model_id,
        framework="sklearn",
        queue="q",
        model_type="random_forest",
        path=f"/models/{model_id}",
        job_id=job_id,
        metrics={"accuracy": 0.9},
        created_at=time.time() if created_at is None else created_at,
    )


def worker(worker_id: str = "w1") -> WorkerInfo:
    now = time.time()
    return WorkerInfo(
        worker_id=worker_id, host="h", pid=1, queues=["q"], started_at=now, last_seen=now
    )


async def claim_one(store: JobStore, queue: str = "q", lease: float = LONG, w: str = "w1") -> Claim:
    claims = await store.claim([queue], w, lease)
    assert len(claims) == 1, claims
    return claims[0]


async def opened(factory: Factory, **options: Any) -> JobStore:
    s = factory(**options)
    await s.open()
    return s
