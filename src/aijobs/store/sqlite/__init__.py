"""The embedded SQLite job store: ``store`` is the store, ``schema`` its tables and rows."""

from aijobs.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
