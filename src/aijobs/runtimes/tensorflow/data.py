"""Image folders for the TensorFlow runtime: find the classes, decode every image once, split.

Pillow and NumPy only (no torch: a TensorFlow worker may run in an environment without it).
Every image is decoded once, converted to RGB, resized to the architecture's input size and kept
in one uint8 array (N, size, size, 3); the model rescales pixels itself, so the saved model
takes raw 0..255 images at inference time too.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aijobs import errors
from aijobs.runtimes import datasets

MIN_IMAGES_PER_CLASS = 2  # one to train on and one to validate with

Images = npt.NDArray[np.uint8]


def check_counts(
    classes: list[str], items: list[tuple[Path, int]], validation_split: float
) -> None:
    """Enough images per class to train and validate on: a clear failure otherwise."""
    need = MIN_IMAGES_PER_CLASS if validation_split > 0 else 1
    counts = np.bincount([label for _, label in items], minlength=len(classes))
    short = [f"{classes[i]!r} ({int(n)})" for i, n in enumerate(counts) if n < need]
    if short:
        raise errors.JobFailure(
            f"too few images: each class needs at least {need} (one to train on, one to "
            f"validate with); these have fewer: {', '.join(short)}"
        )


def preload(items: list[tuple[Path, int]], base: Path, size: int) -> Images:
    """Every image, decoded, as one (n, size, size, 3) uint8 array."""
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    datasets.decode_all(items, base, size, out.__setitem__)
    return out


def split_indices(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices, stratified by class and shuffled with `seed`.

    fraction 0 keeps no validation set: the metrics are then measured on the training data.
    """
    rng = random.Random(seed)
    everything = list(range(len(labels)))
    if fraction <= 0:
        rng.shuffle(everything)
        return everything, sorted(everything)
    groups: dict[int, list[int]] = {}
    for i in everything:
        groups.setdefault(labels[i], []).append(i)
    train: list[int] = []
    val: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        take = min(max(round(len(members) * fraction), 1), len(members) - 1)
        val += members[:take]
        train += members[take:]
    rng.shuffle(train)
    return train, sorted(val)
