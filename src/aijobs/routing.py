"""The queue catalogue and the routing table, as data. One place decides where a job goes.

Precedence (API reference, "Framework Routing"): framework_override, then model type + GPU, then the
default PyTorch 2.1 CPU queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from aijobs import errors
from aijobs.model_types import MODEL_TYPES


@dataclass(frozen=True)
class Queue:
    name: str
    runtime: str  # runtime plugin that serves it (entry-point name)
    framework: str  # family name used by overrides
    version: str | None
    gpu: bool
    label: str
    # No GPU twin in the API reference's table: a job with requires_gpu gets a GPU of its worker,
    # if any.
    gpu_on_request: bool = False


QUEUES: dict[str, Queue] = {
    q.name: q
    for q in (
        Queue("pytorch-2.1-cpu", "pytorch", "pytorch", "2.1", False, "PyTorch 2.1 CPU"),
        Queue("pytorch-2.1-gpu", "pytorch", "pytorch", "2.1", True, "PyTorch 2.1 GPU"),
        Queue("pytorch-2.0-cpu", "pytorch", "pytorch", "2.0", False, "PyTorch 2.0 CPU"),
        Queue("pytorch-2.0-gpu", "pytorch", "pytorch", "2.0", True, "PyTorch 2.0 GPU"),
        Queue("tensorflow", "tensorflow", "tensorflow", None, False, "TensorFlow", True),
        Queue("sklearn", "sklearn", "sklearn", None, False, "Scikit-learn"),
    )
}

DEFAULT_QUEUE = {False: "pytorch-2.1-cpu", True: "pytorch-2.1-gpu"}

# model type -> (queue without GPU, queue with GPU); the API reference's routing table.
ROUTES: dict[str, tuple[str, str]] = {m.name: m.queues for m in MODEL_TYPES.values()}

# Overrides without a device suffix take the device from requires_gpu: name -> (cpu, gpu).
OVERRIDE_ALIASES: dict[str, tuple[str, str]] = {
    "pytorch-2.1": ("pytorch-2.1-cpu", "pytorch-2.1-gpu"),
    "pytorch-2.0": ("pytorch-2.0-cpu", "pytorch-2.0-gpu"),
    "pytorch": ("pytorch-2.1-cpu", "pytorch-2.1-gpu"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "sklearn": ("sklearn", "sklearn"),
    "scikit-learn": ("sklearn", "sklearn"),
}

VALID_OVERRIDES: tuple[str, ...] = tuple(sorted({*QUEUES, *OVERRIDE_ALIASES}))


def model_family(model_type: str) -> str | None:
    """The framework family a known model type needs, or None for a type the table lacks."""
    queues = ROUTES.get(model_type)
    return QUEUES[queues[0]].framework if queues else None


def resolve(
    model_type: str, requires_gpu: bool = False, framework_override: str | None = None
) -> str:
    """The queue a training job goes to."""
    if framework_override:
        key = framework_override.strip().lower()
        if key in QUEUES:
            queue = key
        elif key in OVERRIDE_ALIASES:
            queue = OVERRIDE_ALIASES[key][requires_gpu]
        else:
            raise errors.UnknownFramework(
                f"unknown framework_override {framework_override!r}; valid: "
                + ", ".join(VALID_OVERRIDES)
            )
        family = model_family(model_type)
        if family is not None and family != QUEUES[queue].framework:
            raise errors.IncompatibleFramework(
                f"framework_override {framework_override!r} cannot train model_type "
                f"{model_type!r} (it needs {family})"
            )
        return queue
    if model_type in ROUTES:
        return ROUTES[model_type][requires_gpu]
    return DEFAULT_QUEUE[requires_gpu]
