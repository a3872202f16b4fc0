"""Bounded input, checked at submission: what a job may ask for is bounded here, before it is
stored, rather than found out by a worker's child after it has held a training slot.

The hyperparameters are checked by the runtime that trains the model type (the same check its
worker runs, with the operator's ceilings on top); every part of a request a user fills is
bounded in size, and no number in it is larger than a 64-bit integer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aijobs import errors
from aijobs.api.schemas import InferenceRequest, TrainingRequest
from aijobs.runtimes.base import ChecksHyperparameters, Runtime
from aijobs.settings import Settings

MAX_INTEGER = 2**63 - 1  # beyond what any framework's parameter holds: a 400-digit n_estimators
MAX_DEPTH = 32  # nesting of objects and arrays in hyperparameters or parameters


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse integers no framework takes and nesting no parameter needs."""
    if depth > MAX_DEPTH:
        raise errors.InvalidInput(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise errors.InvalidInput(
            f"{where} is an integer of {len(str(abs(value)))} digits: too large"
        )
    items: Any = value.items() if isinstance(value, Mapping) else ()
    if isinstance(value, list):
        items = enumerate(value)
    for key, item in items:
        _check_json(item, f"{where}.{key}", depth + 1)


def _check_parameters(value: dict[str, Any], name: str, settings: Settings) -> None:
    _check_json(value, name)
    size = len(json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > settings.max_parameters_bytes:
        raise errors.InvalidInput(
            f"{name} take {size} bytes as JSON; at most {settings.max_parameters_bytes} "
            "(AIJOBS_MAX_PARAMETERS_BYTES)"
        )


def _check_timeout(timeout_seconds: float | None, settings: Settings) -> None:
    if timeout_seconds is not None and timeout_seconds > settings.max_job_timeout_seconds:
        raise errors.InvalidInput(
            f"timeout_seconds must be at most {settings.max_job_timeout_seconds:g} on this "
            "server (AIJOBS_MAX_JOB_TIMEOUT_SECONDS)"
        )


def _runtime_for(model_type: str, runtimes: Mapping[str, Runtime]) -> Runtime | None:
    return next((r for r in runtimes.values() if model_type in r.model_types), None)


def check_training(
    body: TrainingRequest, settings: Settings, runtimes: Mapping[str, Runtime]
) -> None:
    """errors.InvalidInput (422) for a training request past a limit or with bad hyperparameters."""
    _check_timeout(body.timeout_seconds, settings)
    if body.description is not None and len(body.description) > settings.max_description_chars:
        raise errors.InvalidInput(
            f"description is longer than {settings.max_description_chars} characters "
            "(AIJOBS_MAX_DESCRIPTION_CHARS)"
        )
    _check_parameters(body.hyperparameters, "hyperparameters", settings)
    runtime = _runtime_for(body.model_type, runtimes)
    if isinstance(runtime, ChecksHyperparameters):
        try:
            runtime.check_hyperparameters(
                body.model_type, body.hyperparameters, dict(settings.ceilings)
            )
        except errors.JobFailure as exc:
            raise errors.InvalidInput(exc.detail) from exc


def check_inference(body: InferenceRequest, settings: Settings) -> None:
    """errors.InvalidInput (422) for an inference request past a limit."""
    _check_timeout(body.timeout_seconds, settings)
    if len(body.input_data) > settings.max_input_data_chars:
        raise errors.InvalidInput(
            f"input_data is longer than {settings.max_input_data_chars} characters "
            "(AIJOBS_MAX_INPUT_DATA_CHARS)"
        )
    _check_parameters(body.parameters, "parameters", settings)
