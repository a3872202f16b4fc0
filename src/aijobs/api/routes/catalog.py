"""What the system can run: queues and their workers, and the trained models."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query

from aijobs import artifacts, routing
from aijobs.api.auth import CallerDep, own_model
from aijobs.api.deps import HintsDep, SettingsDep, StoreDep
from aijobs.api.errors import error_responses
from aijobs.api.ratelimit import ReadLimit, SubmitLimit
from aijobs.api.schemas import (
    MODEL_TYPE_PATTERN,
    NAME_MAX_LENGTH,
    LiveWorker,
    ModelInfo,
    ModelList,
    QueueInfo,
    QueueList,
    RouteInfo,
    WorkerList,
)
from aijobs.jobs import ModelRecord

router = APIRouter(tags=["catalog"])


@router.get(
    "/queues",
    response_model=QueueList,
    responses=error_responses(429, 503),
    dependencies=[ReadLimit],
    summary="Queues, their depth and the live workers serving them",
)
async def queues(store: StoreDep, hints: HintsDep) -> QueueList:
    depths, oldest = await asyncio.gather(
        store.queue_depths(), store.oldest_waiting(list(routing.QUEUES))
    )
    workers = await hints.live_workers()  # up to a second old (api/hints.py)
    now = time.time()
    rows = []
    for q in routing.QUEUES.values():
        serving = [w.worker_id for w in workers if q.name in w.queues]
        depth = depths.get(q.name, {})
        since = oldest.get(q.name)
        rows.append(
            QueueInfo(
                queue=q.name,
                label=q.label,
                gpu=q.gpu,
                pending=depth.get("pending", 0),
                running=depth.get("running", 0),
                oldest_wait_seconds=None if since is None else round(max(0.0, now - since), 3),
                workers=serving,
                has_worker=bool(serving),
            )
        )
    return QueueList(queues=rows)


@router.get(
    "/routing",
    response_model=RouteInfo,
    responses=error_responses(400, 422, 429, 503),
    dependencies=[ReadLimit],
    summary="The queue a training job would go to",
)
async def route(
    hints: HintsDep,
    model_type: Annotated[
        str,
        Query(min_length=1, max_length=NAME_MAX_LENGTH, pattern=MODEL_TYPE_PATTERN),
    ],
    requires_gpu: bool = False,
    framework_override: Annotated[str | None, Query(max_length=NAME_MAX_LENGTH)] = None,
) -> RouteInfo:
    """The routing of POST /jobs/training for these fields, without submitting anything (the
    dashboard shows it before a job is sent): the same rules, the same 400s."""
    queue = routing.QUEUES[routing.resolve(model_type, requires_gpu, framework_override)]
    workers = await hints.live_workers()  # up to a second old (api/hints.py)
    return RouteInfo(
        queue=queue.name,
        label=queue.label,
        gpu=queue.gpu,
        has_worker=any(queue.name in w.queues for w in workers),
    )


@router.get(
    "/workers",
    response_model=WorkerList,
    responses=error_responses(429, 503),
    summary="Live workers",
    dependencies=[ReadLimit],
)
async def workers(hints: HintsDep) -> WorkerList:
    live = await hints.fresh_live_workers()  # read now; the other readers' copy refreshed
    return WorkerList(workers=[LiveWorker.of(w) for w in live])


@router.get(
    "/models",
    response_model=ModelList,
    responses=error_responses(422, 429, 503),
    summary="Trained models, newest first",
    dependencies=[ReadLimit],
)
async def models(
    store: StoreDep,
    who: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ModelList:
    page, total = await store.list_models(limit, offset, principal=who.scope)
    sizes = await asyncio.to_thread(lambda: [files_size(m) for m in page])
    return ModelList(
        models=[ModelInfo.of(m, who.admin, size) for m, size in zip(page, sizes, strict=True)],
        total=total,
        limit=limit,
        offset=offset,
    )


ModelId = Annotated[str, Path(max_length=128)]


def files_size(model: ModelRecord) -> int | None:
    """The bytes of a model's files, or None where this API process does not see them (a
    worker on another host without a shared AIJOBS_HOME keeps them there)."""
    if not os.path.isdir(model.path):
        return None
    total = 0
    for root, _dirs, files in os.walk(model.path, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed as we walked (retention, a delete): not counted
                continue
    return total


@router.get(
    "/models/{model_id}",
    response_model=ModelInfo,
    responses=error_responses(403, 404, 422, 429, 503),
    summary="One trained model",
    dependencies=[ReadLimit],
)
async def model(model_id: ModelId, store: StoreDep, who: CallerDep) -> ModelInfo:
    record = await own_model(store.get_model, who, model_id)
    return ModelInfo.of(record, who.admin, await asyncio.to_thread(files_size, record))


@router.delete(
    "/models/{model_id}",
    response_model=ModelInfo,
    responses=error_responses(403, 404, 422, 429, 503),
    summary="Delete a trained model",
    dependencies=[SubmitLimit],
)
async def delete_model(
    model_id: ModelId, store: StoreDep, settings: SettingsDep, who: CallerDep
) -> ModelInfo:
    """Forget the model, and delete its files where this API process can reach them (the
    model store under AIJOBS_HOME); inference jobs for it are refused from now on. Its
    owner's or an admin's to do."""
    await own_model(store.get_model, who, model_id)
    record = await store.delete_model(model_id)
    artifacts.remove_model_files(settings.models_dir, model_id)
    return ModelInfo.of(record, with_path=who.admin)
