"""The Keras application networks behind `inception`, `mobilenet` and `efficientnet`.

Each is the Keras application without its ImageNet head (no download: ``weights=None``, or a
local weights file), followed by global average pooling, dropout and a softmax layer with one
output per class. The model takes raw 0..255 RGB pixels: InceptionV3 and MobileNetV2 get a
Rescaling layer to [-1, 1] in front (what their ImageNet preprocessing does); MobileNetV3 and
EfficientNet rescale inside the application already. Only built-in layers are used, so the
saved ``.keras`` file loads with ``safe_mode=True``.

Imports Keras: used inside the runtime's methods only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from aijobs import errors

# Batch norm's moving statistics lag far behind the weights in a short job (Keras's momentum
# 0.99 keeps 0.99**n of the initial mean 0 / variance 1 after n steps): a network that fits its
# training batches well then predicts one class for everything in inference mode. Below this
# many steps, the statistics are measured afresh with the epoch's final weights instead.
RECALIBRATE_BELOW_STEPS = 500
RECALIBRATE_SAMPLES = 512
RECALIBRATE_BATCH = 64


def _application(architecture: dict[str, Any], weights: str | None) -> keras.Model:
    apps = keras.applications
    size = int(architecture["image_size"])
    kw: dict[str, Any] = {
        "include_top": False,
        "weights": weights,
        "input_shape": (size, size, 3),
        "pooling": "avg",
    }
    name = architecture["name"]
    if name == "InceptionV3":
        return apps.InceptionV3(**kw)
    if name == "MobileNetV2":
        return apps.MobileNetV2(alpha=architecture["alpha"], **kw)
    if name in ("MobileNetV3Small", "MobileNetV3Large"):
        maker = apps.MobileNetV3Small if name.endswith("Small") else apps.MobileNetV3Large
        # include_preprocessing: raw pixels in, like every other architecture here.
        return maker(alpha=architecture["alpha"], include_preprocessing=True, **kw)
    if name.startswith("EfficientNetB") and name[-1] in "01234567":
        model: keras.Model = getattr(apps, name)(**kw)
        return model
    raise errors.JobFailure(f"unknown architecture {name!r}")


def build(architecture: dict[str, Any], weights: Path | None = None) -> keras.Model:
    """The classifier `architecture` describes (name, image_size, num_classes, dropout_rate)."""
    size = int(architecture["image_size"])
    try:
        backbone = _application(architecture, str(weights) if weights else None)
    except errors.JobFailure:
        raise
    except (ValueError, OSError, KeyError, TypeError) as exc:
        if weights is None:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise errors.JobFailure(
            f"pretrained_weights {weights.name!r} cannot be loaded into "
            f"{architecture['name']} without its top at {size}x{size}: {first}"
        ) from exc
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = inputs
    if architecture["name"] in ("InceptionV3", "MobileNetV2"):
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(x)
    x = backbone(x)
    x = keras.layers.Dropout(float(architecture["dropout_rate"]), name="head_dropout")(x)
    outputs = keras.layers.Dense(
        int(architecture["num_classes"]), activation="softmax", dtype="float32", name="classes"
    )(x)
    return keras.Model(inputs, outputs, name=architecture["model_type"])


def batch_norm_layers(layer: Any) -> Iterator[keras.layers.BatchNormalization]:
    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for inner in getattr(layer, "layers", []):
        yield from batch_norm_layers(inner)


def recalibrate_batch_norm(model: keras.Model, x: Any, seed: int) -> int:
    """Batch norm's moving statistics set to their average over up to RECALIBRATE_SAMPLES
    training images, computed with the current weights; returns the images used.

    Eager forward passes in training mode with each layer's momentum set to 1 - 1/k at the
    k-th batch, which makes the moving value the running mean of the batches' statistics.
    """
    layers = list(batch_norm_layers(model))
    if not layers or len(x) == 0:
        return 0
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(x))[:RECALIBRATE_SAMPLES])
    saved = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(chosen), RECALIBRATE_BATCH), 1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / k
            model(x[chosen[start : start + RECALIBRATE_BATCH]], training=True)
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    return len(chosen)
