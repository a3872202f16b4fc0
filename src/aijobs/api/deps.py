"""Shared request dependencies: the store, the settings, and what this API knows of workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aijobs.settings import Settings
from aijobs.store import JobStore


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[JobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
