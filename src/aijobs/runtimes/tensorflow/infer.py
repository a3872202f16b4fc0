"""Inference for the TensorFlow runtime: load a saved `.keras` model safely, classify images.

Imported inside the runtime's `load`/`predict` only (the worker's inference child).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from aijobs import errors
from aijobs.runtimes import datasets
from aijobs.runtimes.params import validate
from aijobs.runtimes.tensorflow import params as tf_params

MODEL_FILE = "model.keras"
META_FILE = "aijobs.json"


@dataclass
class LoadedModel:
    """What the runtime's load returns: the Keras model and its metadata."""

    model: keras.Model
    meta: dict[str, Any]
    runtime: str = "tensorflow"


def load(model_dir: Path) -> LoadedModel:
    try:
        meta = json.loads((model_dir / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise errors.JobFailure(f"model metadata {META_FILE} is missing or unreadable") from exc
    if not isinstance(meta, dict) or meta.get("runtime") != "tensorflow":
        raise errors.JobFailure(f"model metadata {META_FILE} is not from the tensorflow runtime")
    architecture, classes = meta.get("architecture"), meta.get("classes")
    if not isinstance(architecture, dict) or not isinstance(classes, list) or len(classes) < 2:
        raise errors.JobFailure(f"model metadata {META_FILE} lacks the architecture or classes")
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise errors.JobFailure(f"model file {MODEL_FILE} is missing")
    try:
        # safe_mode: a file that smuggles in a Lambda layer's bytecode is refused, never run.
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise errors.JobFailure(
            f"model file {MODEL_FILE} cannot be loaded safely: {first}"
        ) from exc
    outputs = int(model.output_shape[-1])
    if outputs != len(classes):
        raise errors.JobFailure(
            f"model file {MODEL_FILE} has {outputs} outputs but its metadata lists "
            f"{len(classes)} classes"
        )
    return LoadedModel(model, meta)


def predict(
    loaded: LoadedModel, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
) -> dict[str, Any]:
    kind = loaded.meta.get("model_type", "image model")
    p = validate(parameters, tf_params.PREDICT_PARAMS, what="parameter", context=f" for {kind}")
    if not isinstance(input_data, str):
        raise errors.JobFailure("input_data must be a string: an image path")
    paths = datasets.image_paths(input_data, data_roots)
    classes: list[str] = loaded.meta["classes"]
    size = int(loaded.meta["architecture"]["image_size"])
    batch = np.stack([datasets.decode(path, size, shown) for shown, path in paths])
    # A direct call, not model.predict: no tf.data pipeline or retracing per request.
    probs = np.asarray(loaded.model(batch, training=False), dtype=np.float64)
    images = [shown for shown, _ in paths]
    return datasets.ranked(probs, classes, images, p["top_k"], p["confidence_threshold"])
