"""What the system can run: queues and their workers, and the trained models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aijobs import routing
from aijobs.api.deps import SettingsDep, StoreDep
from aijobs.api.schemas import iso

router = APIRouter(tags=["catalog"])


@router.get("/queues", summary="Queues, their depth and the live workers serving them")
async def queues(store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    depths = await store.queue_depths()
    workers = await store.live_workers(settings.worker_ttl_seconds)
    rows = []
    for q in routing.QUEUES.values():
        serving = [w.worker_id for w in workers if q.name in w.queues]
        depth = depths.get(q.name, {})
        rows.append(
            {
                "queue": q.name,
                "label": q.label,
                "gpu": q.gpu,
                "pending": depth.get("pending", 0),
                "running": depth.get("running", 0),
                "workers": serving,
                "has_worker": bool(serving),
            }
        )
    return {"queues": rows}


@router.get("/workers", summary="Live workers")
async def workers(store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    live = await store.live_workers(settings.worker_ttl_seconds)
    return {
        "workers": [
            {**w.model_dump(), "started_at": iso(w.started_at), "last_seen": iso(w.last_seen)}
            for w in live
        ]
    }


@router.get("/models", summary="Trained models")
async def models(store: StoreDep) -> dict[str, Any]:
    return {
        "models": [
            {**m.model_dump(), "created_at": iso(m.created_at)} for m in await store.list_models()
        ]
    }


@router.get("/models/{model_id}", summary="One trained model")
async def model(model_id: str, store: StoreDep) -> dict[str, Any]:
    m = await store.get_model(model_id)
    return {**m.model_dump(), "created_at": iso(m.created_at)}
