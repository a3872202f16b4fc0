"""Shared request dependencies: the store, the settings, and what this API knows of workers.

Coroutines, although they never await: FastAPI runs a plain function dependency in its thread
pool, a thread hand-off per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aijobs.api.hints import Hints
from aijobs.runtimes.base import Runtime
from aijobs.settings import Settings
from aijobs.store import JobStore


async def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_runtimes(request: Request) -> dict[str, Runtime]:
    """The runtime plugins installed here, by name (light: their frameworks are not imported)."""
    runtimes: dict[str, Runtime] = request.app.state.runtimes
    return runtimes


async def get_hints(request: Request) -> Hints:
    """This process's short-lived copies of the live workers and recent run times (hints.py)."""
    hints: Hints = request.app.state.hints
    return hints


StoreDep = Annotated[JobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimesDep = Annotated[dict[str, Runtime], Depends(get_runtimes)]
HintsDep = Annotated[Hints, Depends(get_hints)]
