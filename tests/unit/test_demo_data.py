"""The demo datasets: named after the spec's examples, learnable, deterministic, idempotent."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from aijobs.demo import CIFAR10_CLASSES, write_demo_data

EXPECTED = [
    "tabular_data.csv",
    "regression.csv",
    "sentiment_analysis.csv",
    "training.csv",
    "image_classification",
    "cifar10",
    "text_generation",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    assert write_demo_data(directory) == [directory / name for name in EXPECTED]
    return directory


def _tree(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_iris_table(demo: Path) -> None:
    rows = _rows(demo / "tabular_data.csv")
    assert list(rows[0]) == ["sepal_length", "sepal_width", "petal_length", "petal_width", "label"]
    assert len(rows) == 150
    assert Counter(r["label"] for r in rows) == {"setosa": 50, "versicolor": 50, "virginica": 50}
    float(rows[0]["sepal_length"])


def test_regression_table(demo: Path) -> None:
    rows = _rows(demo / "regression.csv")
    assert len(rows) == 442
    assert list(rows[0])[-1] == "target"
    assert len({r["target"] for r in rows}) > 100


@pytest.mark.parametrize("name", ["sentiment_analysis.csv", "training.csv"])
def test_sentiment_tables(demo: Path, name: str) -> None:
    rows = _rows(demo / name)
    assert list(rows[0]) == ["text", "label"]
    assert len(rows) >= 200
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == {"positive", "negative"}
    assert counts["positive"] == counts["negative"]
    assert len({r["text"] for r in rows}) > 0.8 * len(rows)  # mostly distinct sentences
    assert all(3 <= len(r["text"].split()) <= 20 for r in rows)


@pytest.mark.parametrize(
    ("name", "classes", "per_class"),
    [
        ("image_classification", [f"digit_{d}" for d in range(10)], 30),
        ("cifar10", sorted(CIFAR10_CLASSES), 12),
    ],
)
def test_image_folders(demo: Path, name: str, classes: list[str], per_class: int) -> None:
    root = demo / name
    assert sorted(p.name for p in root.iterdir()) == classes
    for folder in root.iterdir():
        images = sorted(folder.glob("*.png"))
        assert len(images) == per_class
        with Image.open(images[0]) as image:
            assert image.size == (32, 32)
            assert image.mode == "RGB"
            assert image.getextrema() != ((0, 0), (0, 0), (0, 0))  # not blank


def test_text_generation_corpus(demo: Path) -> None:
    files = sorted((demo / "text_generation").glob("*.txt"))
    assert len(files) >= 3
    total = sum(f.stat().st_size for f in files)
    assert 30_000 < total < 100_000
    assert files[0].read_text().count(".") > 100


def test_total_size_is_small(demo: Path) -> None:
    assert sum(p.stat().st_size for p in demo.rglob("*") if p.is_file()) < 3_000_000


def test_deterministic(demo: Path, tmp_path: Path) -> None:
    write_demo_data(tmp_path)
    assert _tree(tmp_path) == _tree(demo)


def test_idempotent_never_overwrites_and_fills_gaps(demo: Path, tmp_path: Path) -> None:
    write_demo_data(tmp_path)
    edited = tmp_path / "tabular_data.csv"
    edited.write_text("a,label\n1,x\n")
    removed = tmp_path / "cifar10" / "cat" / "cat_003.png"
    removed.unlink()
    (tmp_path / "text_generation" / "chapter_2.txt").unlink()

    write_demo_data(tmp_path)
    assert edited.read_text() == "a,label\n1,x\n"  # the user's file is kept
    tree = _tree(tmp_path)
    expected = _tree(demo)
    assert tree.pop("tabular_data.csv") != expected.pop("tabular_data.csv")
    assert tree == expected  # the missing files came back, identical
    assert not [p for p in tmp_path.rglob("*.tmp")]
