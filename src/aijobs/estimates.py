"""Duration estimates: the median of recent real runs, else a per-model default."""

from __future__ import annotations

import statistics

# Seconds; used only until a job of that kind has completed on that queue.
DEFAULT_SECONDS: dict[str, float] = {
    "random_forest": 30,
    "svm": 60,
    "logistic_regression": 20,
    "bert": 60,
    "transformer": 60,
    "gpt": 60,
    "resnet": 60,
    "vgg": 60,
    "alexnet": 60,
    "inception": 600,
    "mobilenet": 300,
    "efficientnet": 300,
}
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
    return hhmmss(DEFAULT_SECONDS.get(model_type or "", DEFAULT_TRAINING_SECONDS))
