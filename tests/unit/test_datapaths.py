from __future__ import annotations

from pathlib import Path

import pytest

from aijobs import errors
from aijobs.datapaths import resolve_data_path


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    data, more = tmp_path / "data", tmp_path / "more"
    for root in (data, more):
        root.mkdir()
    (data / "a.csv").write_text("x")
    (more / "b.csv").write_text("x")
    (tmp_path / "outside.csv").write_text("x")
    (data / "link.csv").symlink_to(tmp_path / "outside.csv")
    return [data.resolve(), more.resolve()]


def test_accepted_forms(roots: list[Path]) -> None:
    data, more = roots
    assert resolve_data_path("a.csv", roots) == data / "a.csv"
    assert resolve_data_path(str(data / "a.csv"), roots) == data / "a.csv"
    assert resolve_data_path(str(more / "b.csv"), roots) == more / "b.csv"
    assert resolve_data_path("/data/a.csv", roots) == data / "a.csv"  # the spec's form
    assert resolve_data_path("/more/b.csv", roots) == more / "b.csv"


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../outside.csv", "../../etc/passwd", "link.csv", "/data/../outside.csv"],
)
def test_refused(roots: list[Path], path: str) -> None:
    with pytest.raises(errors.InvalidDataPath, match="outside the data roots"):
        resolve_data_path(path, roots)


def test_missing_and_empty(roots: list[Path]) -> None:
    with pytest.raises(errors.InvalidDataPath, match="does not exist"):
        resolve_data_path("nope.csv", roots)
    with pytest.raises(errors.InvalidDataPath):
        resolve_data_path("", roots)
    with pytest.raises(errors.InvalidDataPath):
        resolve_data_path("a\x00.csv", roots)
