from __future__ import annotations

from pathlib import Path

import pytest

from aijobs.demo import write_demo_data


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo datasets, in a root named "data" so the spec's "/data/..." paths work."""
    root = tmp_path_factory.mktemp("demo") / "data"
    write_demo_data(root)
    return root
