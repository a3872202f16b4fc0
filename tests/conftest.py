"""Suite-wide collection rules, and the fixtures tests of every kind share.

`make test` runs the suite on two pytest-xdist workers (--dist loadgroup). Most integration tests
spend their time waiting (on leases, restarts, child processes), so two of them share two cores
well; real training does not: each training test keeps both cores busy with its framework's
threads. The tests that train (marked torch or tensorflow) are therefore one xdist group, run
one after another on one worker, while the other worker takes the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aijobs.store.sqlite import SQLiteStore

TRAINING_MARKS = ("torch", "tensorflow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(mark) for mark in TRAINING_MARKS):
            item.add_marker(pytest.mark.xdist_group("training"))


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open embedded store on a fresh file of its own, closed after the test."""
    store = SQLiteStore(str(tmp_path / "aijobs.db"))
    await store.open()
    yield store
    await store.close()
