"""Labelled data shared by the runtimes (PyTorch and TensorFlow alike): image folders, one
sub-folder of images per class, decoding them, the num_classes check and the validation split.
Pillow and NumPy only, so that each framework's environment can use it alone."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aijobs import datapaths, errors

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PRELOAD_BYTES = 8 * 2**30  # decoded images held in memory at once
MAX_PREDICT_IMAGES = 256


def find_images(data_path: Path) -> tuple[list[str], list[tuple[Path, int]], list[str]]:
    """(classes, [(image, class index)], notes) from a folder of class folders."""
    if not data_path.is_dir():
        raise errors.JobFailure(
            f"data_path {data_path.name!r} is not a directory; image models need a folder with "
            "one sub-folder of images per class"
        )
    notes: list[str] = []
    folders = sorted(p for p in data_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class: dict[str, list[Path]] = {}
    empty: list[str] = []
    for folder in folders:
        images = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if images:
            per_class[folder.name] = images
        else:
            empty.append(folder.name)
    if empty:
        notes.append(f"skipped class folders with no images: {', '.join(empty)}")
    if len(per_class) < 2:
        found = ", ".join(repr(c) for c in per_class) or "none"
        raise errors.JobFailure(
            f"image classification needs at least two class folders with images under "
            f"{data_path.name!r}; found {len(per_class)} ({found})"
        )
    classes = list(per_class)
    items = [(path, i) for i, c in enumerate(classes) for path in per_class[c]]
    return classes, items, notes


def check_num_classes(given: int | None, classes: list[str], notes: list[str]) -> None:
    """num_classes must cover the data; a larger one is adjusted to the data (with a note)."""
    found = len(classes)
    shown = ", ".join(classes[:10]) + (", ..." if found > 10 else "")
    if given is None or given == found:
        return
    if given < found:
        raise errors.JobFailure(
            f"hyperparameter 'num_classes' is {given}, but the data has {found} classes "
            f"({shown}); set it to {found} or leave it out"
        )
    notes.append(
        f"num_classes {given} was given but the data has {found} classes ({shown}); "
        f"the model has {found} outputs"
    )


def split_indices(
    n: int, fraction: float, seed: int, labels: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """(train, validation) indices: shuffled with `seed`, stratified by `labels` when given.

    fraction 0 keeps no validation set: the metrics are then measured on the training data.
    """
    rng = random.Random(seed)
    if fraction <= 0:
        everything = list(range(n))
        rng.shuffle(everything)
        return everything, sorted(everything)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(labels[i] if labels is not None else 0, []).append(i)
    train: list[int] = []
    val: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        take = round(len(members) * fraction)
        take = min(max(take, 1), len(members) - 1) if len(members) >= 2 else 0
        val += members[:take]
        train += members[take:]
    if not val:  # e.g. every class has a single example
        rng.shuffle(train)
        cut = max(1, round(len(train) * fraction))
        val, train = train[:cut], train[cut:]
    if not train:
        raise errors.JobFailure(
            f"validation_split {fraction:g} leaves no training examples out of {n}"
        )
    rng.shuffle(train)
    return train, sorted(val)


def decode(path: Path, size: int, shown: str) -> npt.NDArray[np.uint8]:
    """One image as a (size, size, 3) uint8 array; a clear failure for a bad file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)  # photos taken sideways
            rgb = upright.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.array(rgb, dtype=np.uint8)  # writable: torch.from_numpy shares it
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise errors.JobFailure(f"image {shown!r} cannot be read: {exc}") from exc


def decode_all(
    items: list[tuple[Path, int]],
    base: Path,
    size: int,
    put: Callable[[int, npt.NDArray[np.uint8]], object],
) -> None:
    """Decode every image on a few threads, handing each to `put(index, image)`: the caller
    stores it in its own framework's array, so the images are held in memory once."""
    needed = len(items) * 3 * size * size
    if needed > MAX_PRELOAD_BYTES:
        raise errors.JobFailure(
            f"{len(items)} images at {size}x{size} need {needed / 2**30:.1f} GiB in memory, over "
            f"the {MAX_PRELOAD_BYTES / 2**30:.0f} GiB limit; lower image_size"
        )

    def work(i: int) -> None:
        path = items[i][0]
        put(i, decode(path, size, path.relative_to(base).as_posix()))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(work, range(len(items))))


def image_paths(input_data: str, data_roots: list[Path]) -> list[tuple[str, Path]]:
    """The image paths of an inference job (one a line), each confined to the data roots."""
    lines = [line.strip() for line in (input_data or "").splitlines() if line.strip()]
    if not lines:
        raise errors.JobFailure("input_data is empty: give an image path inside the data roots")
    if len(lines) > MAX_PREDICT_IMAGES:
        raise errors.JobFailure(
            f"input_data names {len(lines)} images; at most {MAX_PREDICT_IMAGES} per job"
        )
    out = []
    for line in lines:
        try:
            path = datapaths.resolve_data_path(line, data_roots, must_exist=False)
        except errors.InvalidDataPath as exc:
            raise errors.JobFailure(exc.detail.replace("data_path", "image path", 1)) from exc
        if not path.is_file():
            state = "is not a file" if path.exists() else "does not exist"
            raise errors.JobFailure(f"image path {line!r} {state}")
        out.append((line, path))
    return out


def ranked(
    probs: npt.NDArray[np.float64],
    classes: list[str],
    images: list[str],
    top_k: int,
    confidence_threshold: float,
) -> dict[str, Any]:
    """An image model's answer from its class probabilities (one row per image): the top_k
    labels with their probabilities, those under confidence_threshold left out."""
    top_k = min(top_k, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    results: list[list[dict[str, Any]]] = []
    predictions: list[str | None] = []
    for row, ranked_idx in zip(probs, order, strict=True):
        best = [(classes[int(i)], round(float(row[i]), 6)) for i in ranked_idx]
        kept = [(label, p) for label, p in best if p >= confidence_threshold]
        results.append([{"label": label, "probability": p} for label, p in kept])
        predictions.append(kept[0][0] if kept else None)
    out: dict[str, Any] = {
        "predictions": predictions,
        "top_k": results,
        "n_rows": len(images),
        "images": images,
    }
    if len(images) == 1:
        out["label"] = predictions[0]
        out["confidence"] = round(float(probs[0][order[0][0]]), 6)
    return out
