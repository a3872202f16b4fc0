"""Hyperparameters and inference parameters of the TensorFlow runtime, checked before any import
of TensorFlow: an unknown name, a wrong type or an out-of-range value fails the job with one
message naming every bad key (the checker is the runtimes' shared one, `aijobs.runtimes.params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aijobs import errors
from aijobs.runtimes.params import SEED_MAX, Param, integer, number, one_of, param, validate

# The smallest input each architecture accepts (Keras refuses smaller ones); also the default
# image size, which keeps the demo images (32x32) and CPU training fast.
MIN_IMAGE_SIZE = {"inception": 75, "mobilenet": 32, "efficientnet": 32}
MAX_IMAGE_SIZE = 1024
EFFICIENTNET_VARIANTS = tuple(f"b{i}" for i in range(8))

# Networks trained from scratch need steps: the demo folder's 240 training images gave 24 steps
# (3 epochs at batch 32), which left mobilenet and efficientnet at 0.68-0.72; 10 epochs at batch 16
# give 150 steps and 0.87. An epoch after the first (which builds the graph) takes about a second
# there on two CPU cores, so this costs seconds, not minutes.
COMMON: dict[str, Param] = {
    "epochs": param(int, 10, integer(1, 10_000)),
    "learning_rate": param(float, 1e-3, number(0, 10, low_open=True)),
    "batch_size": param(int, 16, integer(1, 65_536)),
    "dropout_rate": param(float, 0.2, number(0, 1, high_open=True)),
    "num_classes": param(int, None, integer(2, 1_000_000), nullable=True),
    "validation_split": param(float, 0.2, number(0, 0.9)),
    "seed": param(int, 42, integer(0, SEED_MAX)),
    "image_size": param(int, None, integer(32, MAX_IMAGE_SIZE), nullable=True),
    "optimizer": param(str, "adam", one_of("adam", "adamw", "sgd", "rmsprop")),
    # Cosine decay to zero over the job: a constant rate leaves the last epoch's weights wherever
    # the last few noisy steps put them (held-out accuracy swinging by 0.1 epoch to epoch).
    "lr_schedule": param(str, "cosine", one_of("constant", "cosine")),
    "momentum": param(float, 0.9, number(0, 1, high_open=True)),
    "weight_decay": param(float, None, number(0, 1), nullable=True),
    "pretrained_weights": param(str, None, nullable=True),
}
PER_TYPE: dict[str, dict[str, Param]] = {
    "inception": {},
    "mobilenet": {
        "version": param(int, 2, one_of(2, 3)),
        "variant": param(str, "small", one_of("small", "large")),  # MobileNetV3 only
        "alpha": param(float, 1.0, number(0.1, 2.0)),
    },
    "efficientnet": {"variant": param(str, "b0", one_of(*EFFICIENTNET_VARIANTS))},
}

PREDICT_PARAMS: dict[str, Param] = {
    "top_k": param(int, 5, integer(1, 1_000_000)),
    "confidence_threshold": param(float, 0.0, number(0, 1)),
}


def check(
    model_type: str, given: dict[str, Any], ceilings: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Every hyperparameter of `model_type` resolved (given or default), or a JobFailure."""
    if model_type not in PER_TYPE:
        raise errors.JobFailure(f"the tensorflow runtime cannot train {model_type!r}")
    hp = validate(given, {**COMMON, **PER_TYPE[model_type]}, ceilings=ceilings)
    smallest = MIN_IMAGE_SIZE[model_type]
    if hp["image_size"] is None:
        hp["image_size"] = smallest
    elif hp["image_size"] < smallest:
        raise errors.JobFailure(
            f"hyperparameter 'image_size' must be at least {smallest} for {model_type} "
            f"(the smallest input the architecture accepts), got {hp['image_size']}"
        )
    if model_type == "mobilenet" and hp["version"] == 2 and "variant" in given:
        raise errors.JobFailure(
            "hyperparameter 'variant' ('small' or 'large') applies to mobilenet version 3 only; "
            'add "version": 3 or leave it out'
        )
    return hp


def architecture_name(model_type: str, hp: dict[str, Any]) -> str:
    """The Keras application the hyperparameters select, e.g. "MobileNetV3Small"."""
    if model_type == "inception":
        return "InceptionV3"
    if model_type == "mobilenet":
        return "MobileNetV2" if hp["version"] == 2 else f"MobileNetV3{hp['variant'].title()}"
    return f"EfficientNet{hp['variant'].upper()}"
