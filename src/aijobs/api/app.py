"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from aijobs import __version__, artifacts, errors, logsafe, routing
from aijobs.api import auth
from aijobs.api import errors as api_errors
from aijobs.api.hints import Hints
from aijobs.api.hosts import AllowedHosts
from aijobs.api.limits import BodySizeLimit
from aijobs.api.routes import catalog, dashboard, events, health, jobs, metrics
from aijobs.api.schemas import declare_training_routes
from aijobs.runtimes.base import discover
from aijobs.settings import Settings
from aijobs.store import JobStore, open_store

log = logging.getLogger("aijobs.api")


async def forget_unused_models(store: JobStore, models_dir: Path) -> None:
    """Retention of models (AIJOBS_RETAIN_MODELS_SECONDS): the store forgets them, and their
    files go here, as DELETE /models does; workers elsewhere keep their cached copies."""
    for record in await store.trim_models():
        artifacts.remove_model_files(models_dir, record.model_id)
        log.info("forgot unused model %s", record.model_id)


async def rescue_forever(store: JobStore, interval: float, models_dir: Path) -> None:
    """Expired leases are rescued even while no worker is alive to do it; unused models are
    forgotten."""
    while True:
        await asyncio.sleep(interval)
        try:
            for job_id, state in await store.rescue_expired():
                log.info("rescued expired lease job=%s state=%s", job_id, state)
            await forget_unused_models(store, models_dir)
        except errors.StoreUnavailable as exc:
            log.warning("rescue pass skipped: %s", exc.detail)
        except Exception:
            log.exception("rescue pass failed")


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> FastAPI:
    settings = settings or Settings()
    store = store or open_store(settings.resolved_store_url, settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logsafe.install()  # here too: each of `serve --workers N`'s processes sets up its logging
        await store.open()
        log.info(
            "api ready: store=%s data_roots=%s %s",
            store.kind,
            settings.data_roots,
            " ".join(f"{k}={v}" for k, v in auth.describe(settings).items()),
        )
        reaper = asyncio.create_task(
            rescue_forever(store, settings.lease_seconds / 3, settings.models_dir)
        )
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await store.close()

    app = FastAPI(
        title="aijobs",
        version=__version__,
        description="An HTTP job queue for machine-learning work: training and inference jobs "
        "routed to framework-specific workers.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.auth = auth.Authenticator(settings, store)
    app.state.hints = Hints(store, settings.worker_ttl_seconds)
    app.state.runtimes = discover()
    app.state.model_types = frozenset(routing.ROUTES) | frozenset(
        t for runtime in app.state.runtimes.values() for t in runtime.model_types
    )
    document = app.openapi

    def openapi() -> dict[str, Any]:
        # What FastAPI cannot derive: the model types a training request may name (they depend
        # on the runtimes installed here), and the envelope every error answer is.
        spec = document()
        declare_training_routes(spec, app.state.model_types)
        api_errors.declare_envelope(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    api_errors.install(app)
    app.include_router(health.router)
    dashboard.install(app)  # the page holds no data: the API calls behind it need credentials
    app.include_router(metrics.router)  # its own check: an admin or the metrics token
    # everything but /health needs credentials when auth applies
    for module in (jobs, events, catalog):
        app.include_router(
            module.router,
            dependencies=[Depends(auth.caller)],
            responses=api_errors.error_responses(401),
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if (names := settings.host_names) is not None:
        app.add_middleware(AllowedHosts, names=names)  # outermost: before anything else runs
    return app
