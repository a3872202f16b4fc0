"""Hyperparameters and inference parameters of the PyTorch runtime: declared once, checked once.

Each model type accepts a fixed set of names; an unknown name, a value of the wrong type or out
of range fails the job with one message that names every bad key and says what it accepts.
Light: no torch here, so the plugin module and the tests can use it without the framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aijobs import errors


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, str or bool; a float parameter also takes an integer
    default: Any
    rule: str = ""  # what a valid value is, in words ("an integer >= 1")
    check: Callable[[Any], bool] | None = None
    nullable: bool = False  # null means "the default"


def _int(low: int, high: int | None = None) -> tuple[str, Callable[[Any], bool]]:
    if high is None:
        return f"an integer >= {low}", lambda v: v >= low
    return f"an integer between {low} and {high}", lambda v: low <= v <= high


def _float(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> tuple[str, Callable[[Any], bool]]:
    left, right = ("(" if low_open else "["), (")" if high_open else "]")

    def check(v: Any) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return bool(above and below)

    return f"a number in {left}{low:g}, {high:g}{right}", check


def _choice(*values: Any) -> tuple[str, Callable[[Any], bool]]:
    return "one of " + ", ".join(repr(v) for v in values), lambda v: v in values


def param(
    kind: type,
    default: Any,
    spec: tuple[str, Callable[[Any], bool]] | None = None,
    *,
    nullable: bool = False,
) -> Param:
    rule, check = spec if spec is not None else ("", None)
    return Param(kind, default, rule, check, nullable)


SEED_MAX = 2**32 - 1

# Defaults sized for two CPU cores: a few seconds an epoch on the demo data.
COMMON: dict[str, Param] = {
    "epochs": param(int, 3, _int(1, 10_000)),
    "learning_rate": param(float, None, _float(0, 10, low_open=True), nullable=True),
    "batch_size": param(int, None, _int(1, 65_536), nullable=True),
    "weight_decay": param(float, 0.01, _float(0, 1)),
    "seed": param(int, 42, _int(0, SEED_MAX)),
    "validation_split": param(float, 0.2, _float(0, 0.9)),
    "dropout": param(float, None, _float(0, 1, high_open=True), nullable=True),
    "optimizer": param(str, "adamw", _choice("adamw", "adam", "sgd")),
    "momentum": param(float, 0.9, _float(0, 1, high_open=True)),
    "lr_schedule": param(str, None, _choice("constant", "linear", "cosine"), nullable=True),
    "warmup_ratio": param(float, None, _float(0, 0.5), nullable=True),
    "max_grad_norm": param(float, 1.0, _float(0, 1e6)),
    "mixed_precision": param(bool, True),
}

TEXT: dict[str, Param] = {
    "text_column": param(str, None, nullable=True),
    "label_column": param(str, None, nullable=True),
    "max_length": param(int, 128, _int(8, 8192)),
    "num_layers": param(int, 2, _int(1, 48)),
    "hidden_size": param(int, 128, _int(8, 8192)),
    "num_heads": param(int, None, _int(1, 128), nullable=True),
    "intermediate_size": param(int, None, _int(8, 65_536), nullable=True),
    "vocab_size": param(int, 8000, _int(100, 250_000)),
    "lowercase": param(bool, True),
    "num_classes": param(int, None, _int(2, 1_000_000), nullable=True),
    "pretrained_model": param(str, None, nullable=True),
}

LANGUAGE_MODEL: dict[str, Param] = {
    "max_length": param(int, 128, _int(8, 8192)),
    "num_layers": param(int, 2, _int(1, 48)),
    "hidden_size": param(int, 128, _int(8, 8192)),
    "num_heads": param(int, None, _int(1, 128), nullable=True),
    "intermediate_size": param(int, None, _int(8, 65_536), nullable=True),
    "vocab_size": param(int, 2000, _int(300, 250_000)),
}

_VISION: dict[str, Param] = {
    "image_size": param(int, 32, _int(8, 1024)),
    "width": param(int, None, _int(4, 1024), nullable=True),
    "num_classes": param(int, None, _int(2, 1_000_000), nullable=True),
    "augment": param(bool, False),
}
DEPTHS = {"resnet": (18, 34, 50), "vgg": (11, 13, 16, 19)}
VISION: dict[str, dict[str, Param]] = {
    "resnet": {**_VISION, "depth": param(int, 18, _choice(*DEPTHS["resnet"]))},
    "vgg": {**_VISION, "depth": param(int, 11, _choice(*DEPTHS["vgg"]))},
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
    "resnet": {"learning_rate": 1e-3, "batch_size": 32, "dropout": 0.0, "lr_schedule": "cosine",
               "warmup_ratio": 0.0, "width": 64},
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


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]


def _coerce(name: str, value: Any, p: Param, what: str) -> tuple[Any, str | None]:
    """(value, None) when valid, else (None, the message for this key)."""
    if value is None:
        if p.nullable:
            return p.default, None
        return None, f"{what} {name!r} must be {p.rule or _type_name(p.kind)}, got null"
    ok_type = (
        isinstance(value, p.kind) and not (p.kind is not bool and isinstance(value, bool))
    ) or (p.kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok_type:
        shown = repr(value) if not isinstance(value, str) else f"the string {value!r}"
        return None, f"{what} {name!r} must be {_type_name(p.kind)}, got {shown}"
    if p.kind is float:
        value = float(value)
    if p.check is not None and not p.check(value):
        return None, f"{what} {name!r} must be {p.rule}, got {value!r}"
    return value, None


def validate(
    given: Mapping[str, Any],
    accepted: Mapping[str, Param],
    defaults: Mapping[str, Any] | None = None,
    *,
    what: str = "hyperparameter",
    context: str = "",
) -> dict[str, Any]:
    """Every accepted name with its value (given or default); JobFailure naming each bad key."""
    if not isinstance(given, Mapping):
        raise errors.JobFailure(f"{what}s must be a JSON object, got {type(given).__name__}")
    problems: list[str] = []
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        problems.append(
            f"unknown {what}{plural}{context}: {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )
    resolved: dict[str, Any] = {}
    for name, p in accepted.items():
        default = (defaults or {}).get(name, p.default)
        if name not in given:
            resolved[name] = default
            continue
        value, problem = _coerce(name, given[name], p, what)
        if problem:
            problems.append(problem)
        resolved[name] = default if value is None else value
    if problems:
        raise errors.JobFailure("; ".join(problems))
    return resolved


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
