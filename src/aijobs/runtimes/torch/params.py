"""Hyperparameters of the PyTorch runtime: what each model type accepts and its defaults,
checked by the shared validator (`aijobs.runtimes.params`) before anything heavy.

Light: no torch here, so the plugin module and the tests can use it without the framework.
"""

from __future__ import annotations

from typing import Any

from aijobs import errors
from aijobs.runtimes.params import SEED_MAX, Param, integer, number, one_of, param

# Defaults sized for two CPU cores: a few seconds an epoch on the demo data.
COMMON: dict[str, Param] = {
    "epochs": param(int, 3, integer(1, 10_000)),
    "learning_rate": param(float, None, number(0, 10, low_open=True), nullable=True),
    "batch_size": param(int, None, integer(1, 65_536), nullable=True),
    "weight_decay": param(float, 0.01, number(0, 1)),
    "seed": param(int, 42, integer(0, SEED_MAX)),
    "validation_split": param(float, 0.2, number(0, 0.9)),
    "dropout": param(float, None, number(0, 1, high_open=True), nullable=True),
    "optimizer": param(str, "adamw", one_of("adamw", "adam", "sgd")),
    "momentum": param(float, 0.9, number(0, 1, high_open=True)),
    "lr_schedule": param(str, None, one_of("constant", "linear", "cosine"), nullable=True),
    "warmup_ratio": param(float, None, number(0, 0.5), nullable=True),
    "max_grad_norm": param(float, 1.0, number(0, 1e6)),
    "mixed_precision": param(bool, True),
    # A checkpoint at the end of the first epoch this long after the last one (0: every epoch).
    "checkpoint_every_seconds": param(float, 60.0, number(0, 1e9)),
}

TEXT: dict[str, Param] = {
    "text_column": param(str, None, nullable=True),
    "label_column": param(str, None, nullable=True),
    "max_length": param(int, 128, integer(8, 8192)),
    "num_layers": param(int, 2, integer(1, 48)),
    "hidden_size": param(int, 128, integer(8, 8192)),
    "num_heads": param(int, None, integer(1, 128), nullable=True),
    "intermediate_size": param(int, None, integer(8, 65_536), nullable=True),
    "vocab_size": param(int, 8000, integer(100, 250_000)),
    "lowercase": param(bool, True),
    "num_classes": param(int, None, integer(2, 1_000_000), nullable=True),
    "pretrained_model": param(str, None, nullable=True),
}

LANGUAGE_MODEL: dict[str, Param] = {
    "max_length": param(int, 128, integer(8, 8192)),
    "num_layers": param(int, 2, integer(1, 48)),
    "hidden_size": param(int, 128, integer(8, 8192)),
    "num_heads": param(int, None, integer(1, 128), nullable=True),
    "intermediate_size": param(int, None, integer(8, 65_536), nullable=True),
    "vocab_size": param(int, 2000, integer(300, 250_000)),
    "pretrained_model": param(str, None, nullable=True),
}

_VISION: dict[str, Param] = {
    "image_size": param(int, 32, integer(8, 1024)),
    "width": param(int, None, integer(4, 1024), nullable=True),
    "num_classes": param(int, None, integer(2, 1_000_000), nullable=True),
    "augment": param(bool, False),
}
DEPTHS = {"resnet": (18, 34, 50), "vgg": (11, 13, 16, 19)}
VISION: dict[str, dict[str, Param]] = {
    "resnet": {**_VISION, "depth": param(int, 18, one_of(*DEPTHS["resnet"]))},
    "vgg": {**_VISION, "depth": param(int, 11, one_of(*DEPTHS["vgg"]))},
    "alexnet": dict(_VISION),
}

# Per model type: overrides of the common defaults that suit it.
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    # A small encoder trained from scratch sits on a plateau for its first ~50 steps: small
    # batches, a constant rate and 5 epochs get past it on a few hundred rows (every seed tried).
    "bert": {"epochs": 5, "learning_rate": 1e-3, "batch_size": 8, "dropout": 0.1,
             "lr_schedule": "constant", "warmup_ratio": 0.05},
    "lm": {"learning_rate": 2e-3, "batch_size": 4, "dropout": 0.1, "lr_schedule": "cosine",
           "warmup_ratio": 0.1},
    # ResNet-18 learns more slowly per step than vgg/alexnet: 3 epochs of 8 steps on the demo
    # digits reach 0.75, 5 epochs of 15 steps (batch 16) 0.92, in under a minute on 2 cores.
    "resnet": {"epochs": 5, "learning_rate": 1e-3, "batch_size": 16, "dropout": 0.0,
               "lr_schedule": "cosine", "warmup_ratio": 0.0, "width": 64},
    "vgg": {"learning_rate": 1e-3, "batch_size": 32, "dropout": 0.3, "lr_schedule": "cosine",
            "warmup_ratio": 0.0, "width": 32},
    "alexnet": {"learning_rate": 1e-3, "batch_size": 32, "dropout": 0.3, "lr_schedule": "cosine",
                "warmup_ratio": 0.0, "width": 32},
}  # fmt: skip

# Fine-tuning a pretrained encoder: the usual recipe.
TEXT_PRETRAINED_DEFAULTS: dict[str, Any] = {
    "epochs": 3,
    "learning_rate": 5e-5,
    "batch_size": 16,
    "lr_schedule": "linear",
    "warmup_ratio": 0.1,
}

LM_PRETRAINED_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-5,
    "lr_schedule": "linear",
    "warmup_ratio": 0.1,
}


REFERENCE_WIDTH = 128  # the default hidden_size, for which the default learning rates are tuned


def default_learning_rate(
    given: dict[str, Any], hp: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    """A transformer wider than the default gets a proportionally lower default rate
    (2e-3 at width 128 becomes 3.3e-4 at 768, GPT-2's range); a given rate is kept."""
    if given.get("learning_rate") is not None or hp["hidden_size"] <= REFERENCE_WIDTH:
        return hp
    rate = float(f"{hp['learning_rate'] * REFERENCE_WIDTH / hp['hidden_size']:.3g}")
    notes.append(f"learning_rate defaulted to {rate:g} for hidden_size {hp['hidden_size']}")
    return {**hp, "learning_rate": rate}


def spec_for(model_type: str) -> tuple[dict[str, Param], dict[str, Any]]:
    """The accepted hyperparameters of a model type and its defaults."""
    if model_type == "bert":
        return {**COMMON, **TEXT}, TYPE_DEFAULTS["bert"]
    if model_type in ("transformer", "gpt"):
        return {**COMMON, **LANGUAGE_MODEL}, TYPE_DEFAULTS["lm"]
    if model_type in VISION:
        return {**COMMON, **VISION[model_type]}, TYPE_DEFAULTS[model_type]
    raise errors.JobFailure(f"the pytorch runtime cannot train {model_type!r}")


def default_heads(hidden_size: int, num_heads: int | None) -> int:
    """Attention heads: as given (must divide hidden_size), else one per 64 dimensions."""
    if num_heads is not None:
        if hidden_size % num_heads:
            raise errors.JobFailure(
                f"hyperparameter 'num_heads' ({num_heads}) must divide 'hidden_size' "
                f"({hidden_size})"
            )
        return num_heads
    heads = max(1, hidden_size // 64)
    while hidden_size % heads:
        heads -= 1
    return heads
