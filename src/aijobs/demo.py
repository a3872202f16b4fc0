"""Small, learnable demo datasets named after the API reference's examples, made offline.

``write_demo_data(Path("data"))`` gives every example in the API reference a real file to train on:

- ``tabular_data.csv``: iris (4 numeric features, ``label`` = species name)
- ``regression.csv``: diabetes (10 features, numeric ``target``)
- ``sentiment_analysis.csv``, ``training.csv``: ``text,label`` short English reviews,
  ``positive``/``negative``, generated from word lists and templates
- ``image_classification/<class>/*.png``: sklearn's 8x8 digits upscaled to 32x32 RGB, 10 classes
- ``cifar10/<cifar class>/*.png``: the same digits under CIFAR-10's class names, tinted
- ``text_generation/*.txt``: generated prose for language-model training

Only data bundled with scikit-learn is used (no downloads). Output is deterministic; existing
files are never overwritten, and each file appears atomically (a crash leaves no half file).
"""

from __future__ import annotations

import csv
import io
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED = 1234
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IMAGES_PER_CLASS = 30
CIFAR_IMAGES_PER_CLASS = 12
IMAGE_SIZE = 32

_POSITIVE = [
    "great",
    "excellent",
    "wonderful",
    "amazing",
    "fantastic",
    "delightful",
    "superb",
    "lovely",
    "brilliant",
    "outstanding",
    "enjoyable",
    "perfect",
    "pleasant",
    "impressive",
    "charming",
    "reliable",
]
_NEGATIVE = [
    "terrible",
    "awful",
    "horrible",
    "dreadful",
    "disappointing",
    "poor",
    "boring",
    "broken",
    "useless",
    "annoying",
    "mediocre",
    "unpleasant",
    "frustrating",
    "faulty",
    "painful",
    "sloppy",
]
_POSITIVE_VERBS = ["love", "adore", "enjoy", "recommend", "appreciate", "treasure"]
_NEGATIVE_VERBS = ["hate", "regret", "dislike", "returned", "resent", "avoid"]
_THINGS = [
    "product",
    "movie",
    "service",
    "meal",
    "phone",
    "book",
    "hotel",
    "laptop",
    "camera",
    "game",
    "app",
    "show",
    "coffee",
    "headphones",
    "restaurant",
    "course",
]
_TEMPLATES = (
    "This {thing} is {adj}.",
    "The {thing} was {adj} and {adj2}.",
    "What a {adj} {thing}!",
    "I {verb} this {thing}, it is {adj}.",
    "Honestly the {thing} felt {adj}.",
    "My {thing} turned out {adj}, truly {adj2}.",
    "A {adj} {thing} from start to finish.",
    "I {verb} the {thing}; {adj} experience overall.",
)
_PROSE_SUBJECTS = [
    "the model",
    "the engineer",
    "a small team",
    "the queue",
    "every worker",
    "the dataset",
    "the scheduler",
    "a curious student",
    "the old server",
    "the training run",
]
_PROSE_VERBS = [
    "learns from",
    "waits for",
    "reads",
    "improves",
    "measures",
    "schedules",
    "remembers",
    "compares",
    "describes",
    "builds",
]
_PROSE_OBJECTS = [
    "the next batch",
    "a quiet morning",
    "thousands of examples",
    "the validation set",
    "a patient answer",
    "the river of numbers",
    "a careful plan",
    "the last checkpoint",
    "simple words",
    "the long night",
]
_PROSE_ENDINGS = [
    "before the sun rises",
    "with great care",
    "while the fans hum",
    "one step at a time",
    "until the loss falls",
    "as the logs scroll by",
    "without a single error",
    "and then rests",
]


def write_demo_data(directory: Path) -> list[Path]:
    """Write every demo dataset under `directory` (missing files only); their top-level paths."""
    directory.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Callable[[Path], None]] = {
        "tabular_data.csv": _iris,
        "regression.csv": _diabetes,
        "sentiment_analysis.csv": lambda p: _sentiment(p, rows=400, seed=SEED),
        "training.csv": lambda p: _sentiment(p, rows=240, seed=SEED + 1),
        "image_classification": lambda p: _images(p, _digit_names(), IMAGES_PER_CLASS, 0, False),
        "cifar10": lambda p: _images(p, CIFAR10_CLASSES, CIFAR_IMAGES_PER_CLASS, 100, True),
        "text_generation": _prose,
    }
    paths = []
    for name, write in writers.items():
        path = directory / name
        write(path)
        paths.append(path)
    return paths


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `path` unless it exists; the file appears whole or not at all."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def _iris(path: Path) -> None:
    if path.exists():
        return
    from sklearn.datasets import load_iris

    iris = load_iris()
    rows = [
        [*(f"{v:g}" for v in x), iris.target_names[t]]
        for x, t in zip(iris.data, iris.target, strict=True)
    ]
    _write_atomic(path, _csv_bytes([*IRIS_COLUMNS, "label"], rows))


def _diabetes(path: Path) -> None:
    if path.exists():
        return
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    rows = [[*(f"{v:g}" for v in x), f"{t:g}"] for x, t in zip(data.data, data.target, strict=True)]
    _write_atomic(path, _csv_bytes([*data.feature_names, "target"], rows))


def _sentence(rng: random.Random, positive: bool) -> str:
    adjectives = _POSITIVE if positive else _NEGATIVE
    verbs = _POSITIVE_VERBS if positive else _NEGATIVE_VERBS
    adj, adj2 = rng.sample(adjectives, 2)
    template = rng.choice(_TEMPLATES)
    return template.format(thing=rng.choice(_THINGS), adj=adj, adj2=adj2, verb=rng.choice(verbs))


def _sentiment(path: Path, rows: int, seed: int) -> None:
    if path.exists():
        return
    rng = random.Random(seed)
    table: list[list[Any]] = []
    for i in range(rows):
        positive = i % 2 == 0
        table.append([_sentence(rng, positive), "positive" if positive else "negative"])
    rng.shuffle(table)
    _write_atomic(path, _csv_bytes(["text", "label"], table))


def _digit_names() -> tuple[str, ...]:
    return tuple(f"digit_{d}" for d in range(10))


def _images(
    directory: Path, classes: tuple[str, ...], per_class: int, offset: int, tint: bool
) -> None:
    """PNGs of sklearn's digits: class i of `classes` shows digit i, 32x32 RGB."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = None
    for digit, name in enumerate(classes):
        wanted = [directory / name / f"{name}_{k:03d}.png" for k in range(per_class)]
        if all(p.exists() for p in wanted):
            continue
        if digits is None:
            digits = load_digits()
        indices = np.flatnonzero(digits.target == digit)[offset : offset + per_class]
        color = np.array(_tint(digit) if tint else (1.0, 1.0, 1.0))
        for path, index in zip(wanted, indices, strict=False):
            if path.exists():
                continue
            gray = digits.images[index] / 16.0  # 8x8, values 0..16
            rgb = (gray[:, :, None] * color[None, None, :] * 255).round().astype(np.uint8)
            image = Image.fromarray(rgb, mode="RGB").resize(
                (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR
            )
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=False)
            _write_atomic(path, buf.getvalue())


def _tint(digit: int) -> tuple[float, float, float]:
    rng = random.Random(SEED + digit)
    return (0.4 + 0.6 * rng.random(), 0.4 + 0.6 * rng.random(), 0.4 + 0.6 * rng.random())


def _prose(directory: Path) -> None:
    titles = ("chapter_1", "chapter_2", "chapter_3", "chapter_4")
    for i, title in enumerate(titles):
        path = directory / f"{title}.txt"
        if path.exists():
            continue
        rng = random.Random(SEED + 10 + i)
        paragraphs = []
        for _ in range(24):
            sentences = [
                " ".join(
                    (
                        rng.choice(_PROSE_SUBJECTS).capitalize(),
                        rng.choice(_PROSE_VERBS),
                        rng.choice(_PROSE_OBJECTS),
                        rng.choice(_PROSE_ENDINGS),
                    )
                )
                + "."
                for _ in range(rng.randint(4, 8))
            ]
            paragraphs.append(" ".join(sentences))
        _write_atomic(path, ("\n\n".join(paragraphs) + "\n").encode())
