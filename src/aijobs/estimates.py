"""Duration estimates: the median of recent real runs, else a per-model default."""

from __future__ import annotations

import statistics

from aijobs.model_types import MODEL_TYPES

DEFAULT_TRAINING_SECONDS = 900.0
DEFAULT_INFERENCE_SECONDS = 60.0


def hhmmss(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def estimate(history: list[float], model_type: str | None, inference: bool) -> str:
    if history:
        return hhmmss(statistics.median(history))
    if inference:
        return hhmmss(DEFAULT_INFERENCE_SECONDS)
    known = MODEL_TYPES.get(model_type or "")
    return hhmmss(known.default_seconds if known else DEFAULT_TRAINING_SECONDS)
