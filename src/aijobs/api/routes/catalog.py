"""What the system can run: queues and their workers, and the trained models."""

from __future__ import annotations

from fastapi import APIRouter

from aijobs import routing
from aijobs.api.auth import CallerDep, own_model
from aijobs.api.deps import SettingsDep, StoreDep
from aijobs.api.errors import error_responses
from aijobs.api.schemas import LiveWorker, ModelInfo, ModelList, QueueInfo, QueueList, WorkerList

router = APIRouter(tags=["catalog"])


@router.get(
    "/queues",
    response_model=QueueList,
    responses=error_responses(503),
    summary="Queues, their depth and the live workers serving them",
)
async def queues(store: StoreDep, settings: SettingsDep) -> QueueList:
    depths = await store.queue_depths()
    workers = await store.live_workers(settings.worker_ttl_seconds)
    rows = []
    for q in routing.QUEUES.values():
        serving = [w.worker_id for w in workers if q.name in w.queues]
        depth = depths.get(q.name, {})
        rows.append(
            QueueInfo(
                queue=q.name,
                label=q.label,
                gpu=q.gpu,
                pending=depth.get("pending", 0),
                running=depth.get("running", 0),
                workers=serving,
                has_worker=bool(serving),
            )
        )
    return QueueList(queues=rows)


@router.get(
    "/workers", response_model=WorkerList, responses=error_responses(503), summary="Live workers"
)
async def workers(store: StoreDep, settings: SettingsDep) -> WorkerList:
    live = await store.live_workers(settings.worker_ttl_seconds)
    return WorkerList(workers=[LiveWorker.of(w) for w in live])


@router.get(
    "/models", response_model=ModelList, responses=error_responses(503), summary="Trained models"
)
async def models(store: StoreDep, who: CallerDep) -> ModelList:
    mine = await store.list_models(principal=who.scope)
    return ModelList(models=[ModelInfo.of(m, with_path=who.admin) for m in mine])


@router.get(
    "/models/{model_id}",
    response_model=ModelInfo,
    responses=error_responses(403, 404, 422, 503),
    summary="One trained model",
)
async def model(model_id: str, store: StoreDep, who: CallerDep) -> ModelInfo:
    return ModelInfo.of(await own_model(store, who, model_id), with_path=who.admin)
