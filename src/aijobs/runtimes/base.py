"""The runtime plugin interface: built-in model types and users' own trainers plug in the same way.

A runtime is a class registered under the ``aijobs.runtimes`` entry-point group. Its heavy
framework imports happen inside ``train``/``load``/``predict`` only, which run in a worker's
child process, never in the API.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class TrainContext(Protocol):
    """What a training job may use and report through while it runs (in the child process)."""

    job_id: str
    attempt: int
    model_dir: Path  # empty, attempt-scoped directory the runtime writes its model files into
    checkpoint_dir: Path  # job-scoped, survives a rescue: resume from the last epoch saved here
    data_roots: list[Path]
    device: str  # "cpu" or "cuda"

    def report(
        self, fraction: float, metrics: dict[str, Any] | None = None, *, epoch: int | None = None
    ) -> None:
        """Progress in 0..1 and the latest metrics; with `epoch`, also appended to the history."""


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # final held-out metrics; the worker adds training_time
    info: dict[str, Any] = field(default_factory=dict)  # anything else for the job's result


@runtime_checkable
class Runtime(Protocol):
    name: str  # entry-point name, e.g. "sklearn"
    framework: str  # reported as result.framework
    model_types: frozenset[str]

    def missing(self) -> str | None:
        """None when the framework imports here; else the message saying what to install."""

    def framework_version(self) -> str: ...

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        """Train on data_path, save into ctx.model_dir, return held-out metrics.

        Raise errors.JobFailure with a user-facing message for bad data or hyperparameters.
        """

    def load(self, model_dir: Path) -> Any:
        """Load a model saved by train, safely (no arbitrary code execution from files)."""

    def predict(
        self, model: Any, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
    ) -> dict[str, Any]:
        """Run inference; raise errors.JobFailure for bad input."""


@runtime_checkable
class ChecksHyperparameters(Protocol):
    """What a runtime may add: its hyperparameter check, light enough for the API to run at
    submission (no framework import) with the operator's ceilings, and the worker again."""

    def check_hyperparameters(
        self,
        model_type: str,
        hyperparameters: dict[str, Any],
        ceilings: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """The hyperparameters checked; errors.JobFailure naming each bad one."""


ENTRY_POINT_GROUP = "aijobs.runtimes"
log = logging.getLogger("aijobs.runtimes")


def missing_packages(required: dict[str, str], framework: str, extra: str) -> str | None:
    """What to install when any module of `required` ({module: distribution}) is absent.

    Found without importing them: the API asks every runtime and must stay light.
    """
    absent = [dist for mod, dist in required.items() if importlib.util.find_spec(mod) is None]
    if absent:
        return (
            f"{framework} runtime not installed (missing {', '.join(absent)}): "
            f"pip install 'aijobs[{extra}]'"
        )
    return None


def discover() -> dict[str, Runtime]:
    """Every installed runtime plugin that loads, by name; a broken one is logged and skipped."""
    found: dict[str, Runtime] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()()
        except Exception:
            log.exception("runtime plugin %r (%s) failed to load; skipped", ep.name, ep.value)
    return found


def load_runtime(name: str, installed: dict[str, Runtime] | None = None) -> Runtime | None:
    """The runtime called `name`: an entry-point name, or ``module:Class`` importable here.

    The second form lets a worker serve a queue with a runtime class that is not packaged
    (``aijobs worker --runtime mypkg.trainers:XGBoostRuntime``). None when it is not found.
    """
    if ":" not in name:
        return (discover() if installed is None else installed).get(name)
    module, _, attr = name.partition(":")
    try:
        runtime: Runtime = getattr(import_module(module), attr)()
    except (ImportError, AttributeError):
        log.exception("runtime %r failed to load", name)
        return None
    return runtime
