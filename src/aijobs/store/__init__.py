"""Job stores, chosen by URL scheme: sqlite:///path (embedded), or Redis (redis://host:port/db,
rediss:// for TLS, unix:///path/to/redis.sock?db=0). Backends are imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aijobs.store.base import JobStore

if TYPE_CHECKING:
    from aijobs.settings import Settings

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_store(url: str, *, settings: Settings | None = None, **options: object) -> JobStore:
    """Build (not yet open) the store that `url` names; backends are imported lazily.

    A Redis store takes its other settings (AIJOBS_REDIS_*, AIJOBS_RETAIN_*) from `settings`,
    or else from the environment; an SQLite store its retention from `settings` when given;
    `options` override them.
    """
    if url.startswith("sqlite:///"):
        from aijobs.store.base import RetryBackoff
        from aijobs.store.sqlite import SQLiteStore

        if settings is not None:
            options = {
                "retain_jobs": settings.retain_jobs,
                "retain_seconds": settings.retain_seconds,
                "retain_models_seconds": settings.retain_models_seconds,
                "retry_backoff": RetryBackoff.from_settings(settings),
                "log_keep_chars": settings.log_keep_chars,
                **options,
            }
        return SQLiteStore(url.removeprefix("sqlite:///"), **options)  # type: ignore[arg-type]
    if url.startswith(REDIS_SCHEMES):
        from aijobs.settings import Settings
        from aijobs.store.redis import RedisStore

        return RedisStore.from_settings(url, settings or Settings(), **options)
    raise ValueError(
        f"unsupported store URL {url!r}: use sqlite:///PATH, redis://HOST:PORT/DB, "
        "rediss://HOST:PORT/DB or unix:///PATH?db=N"
    )


__all__ = ["JobStore", "open_store"]
