"""Job stores, chosen by URL scheme: sqlite:///path (embedded) or redis://host:port/db."""

from __future__ import annotations

from aijobs.store.base import JobStore


def open_store(url: str, **options: object) -> JobStore:
    """Build (not yet open) the store that `url` names; backends are imported lazily."""
    if url.startswith("sqlite:///"):
        from aijobs.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), **options)  # type: ignore[arg-type]
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH")


__all__ = ["JobStore", "open_store"]
