"""The model types aijobs trains out of the box, written once: the runtime that trains each, the
queues it goes to, and how long its training is expected to take before any has run.

Routing (`aijobs.routing`), the duration estimates (`estimate`, below) and each runtime's
`model_types` read this table. A model type not in it still trains: it goes to the default queue
(or the one its framework_override names) and any runtime there may accept it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelType:
    name: str
    runtime: str  # the runtime plugin that trains it (entry-point name)
    queues: tuple[str, str]  # (without a GPU, with one): the API reference's routing table
    # Seconds; the estimate until a job of this kind has completed on its queue.
    default_seconds: float


PYTORCH_21 = ("pytorch-2.1-cpu", "pytorch-2.1-gpu")
PYTORCH_20 = ("pytorch-2.0-cpu", "pytorch-2.0-gpu")
TENSORFLOW = ("tensorflow", "tensorflow")
SKLEARN = ("sklearn", "sklearn")

MODEL_TYPES: dict[str, ModelType] = {
    m.name: m
    for m in (
        ModelType("bert", "pytorch", PYTORCH_21, 60),
        ModelType("transformer", "pytorch", PYTORCH_21, 60),
        ModelType("gpt", "pytorch", PYTORCH_21, 60),
        ModelType("resnet", "pytorch", PYTORCH_20, 60),
        ModelType("vgg", "pytorch", PYTORCH_20, 60),
        ModelType("alexnet", "pytorch", PYTORCH_20, 60),
        ModelType("inception", "tensorflow", TENSORFLOW, 600),
        ModelType("mobilenet", "tensorflow", TENSORFLOW, 300),
        ModelType("efficientnet", "tensorflow", TENSORFLOW, 300),
        ModelType("random_forest", "sklearn", SKLEARN, 30),
        ModelType("svm", "sklearn", SKLEARN, 60),
        ModelType("logistic_regression", "sklearn", SKLEARN, 20),
    )
}


def served_by(runtime: str) -> frozenset[str]:
    """The model types the runtime plugin called `runtime` trains."""
    return frozenset(m.name for m in MODEL_TYPES.values() if m.runtime == runtime)


# -- duration estimates: the median of recent real runs, else the catalogue's default ----------
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
