"""Shared request dependencies: the store, the settings, and what this API knows of workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aijobs.runtimes.base import Runtime
from aijobs.settings import Settings
from aijobs.store import JobStore


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_model_types(request: Request) -> frozenset[str]:
    """Model types the routing table or an installed runtime plugin knows."""
    known: frozenset[str] = request.app.state.model_types
    return known


def get_runtimes(request: Request) -> dict[str, Runtime]:
    """The runtime plugins installed here, by name (light: their frameworks are not imported)."""
    runtimes: dict[str, Runtime] = request.app.state.runtimes
    return runtimes


StoreDep = Annotated[JobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelTypesDep = Annotated[frozenset[str], Depends(get_model_types)]
RuntimesDep = Annotated[dict[str, Runtime], Depends(get_runtimes)]


async def served_queues(store: JobStore, settings: Settings) -> set[str]:
    """Queues that at least one live worker serves right now."""
    workers = await store.live_workers(settings.worker_ttl_seconds)
    return {q for w in workers for q in w.queues}
