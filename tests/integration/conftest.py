from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aijobs.demo import write_demo_data
from tests.integration.harness import System


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "data"
    root.mkdir()
    write_demo_data(root)
    slow = root / "slow.csv"  # enough rows that a big forest takes seconds, not milliseconds
    lines = ["a,b,c,d,label"]
    lines += [
        f"{i % 7},{i % 11},{i % 13},{(i * 7) % 17},{'x' if i % 3 else 'y'}" for i in range(3000)
    ]
    slow.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def system(tmp_path: Path, demo_root: Path) -> Iterator[System]:
    s = System(home=tmp_path / "var", data=demo_root)
    yield s
    s.stop_all()


@pytest.fixture
def running(system: System) -> System:
    """API plus one sklearn worker."""
    system.start_api()
    system.start_worker("sklearn")
    return system
