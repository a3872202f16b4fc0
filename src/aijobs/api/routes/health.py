"""Health checks: the API itself, and the truth about the store behind it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from aijobs import __version__
from aijobs.api.deps import StoreDep
from aijobs.api.schemas import Health, StoreHealth, iso
from aijobs.jobs import now

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Is the API running")
async def health(store: StoreDep) -> Health:
    return Health(timestamp=iso(now()) or "", version=__version__, store=store.kind)


@router.get(
    "/health/redis",
    response_model=StoreHealth,
    responses={503: {"model": StoreHealth, "description": "The store is unhealthy"}},
    summary="The job store's health (Redis, or the embedded store)",
)
async def store_health(store: StoreDep) -> JSONResponse:
    report = await store.health()
    body: dict[str, object] = {
        "status": "healthy" if report.get("healthy") else "unhealthy",
        "timestamp": iso(now()),
        **report,
    }
    if store.kind != "redis":
        body["redis"] = "not configured"
        body["detail"] = (
            f"the embedded {store.kind} store is in use; no Redis is configured "
            "(set AIJOBS_STORE_URL=redis://... to use one)"
        )
    return JSONResponse(body, status_code=200 if report.get("healthy") else 503)
