"""The TensorFlow runtime: `inception` (InceptionV3), `mobilenet` (MobileNetV2/V3) and
`efficientnet` (EfficientNetB0..B7) image classifiers, trained for real with Keras.

Serves the `tensorflow` queue. This module stays light (the API and the worker's supervisor
import it for plugin discovery): TensorFlow and Keras are imported by the other modules of this
package, which are imported inside the methods only, after the environment they read at import
is set.

- params: the hyperparameters each model type accepts, checked before anything heavy
- models: the Keras application networks; train: data, fit + progress; infer: load, predict
- image folders, decoding and the split are the runtimes' shared `aijobs.runtimes.datasets`
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from aijobs import errors
from aijobs.model_types import served_by
from aijobs.runtimes.base import TrainContext, TrainResult, missing_packages
from aijobs.runtimes.tensorflow import params as tf_params

MODEL_TYPES = served_by("tensorflow")
REQUIRED = {"tensorflow": "tensorflow-cpu", "keras": "keras", "PIL": "pillow", "numpy": "numpy"}
DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-macos")


def _environment() -> None:
    """What TensorFlow and Keras read when first imported: set before that import.

    Keras 3 must run on TensorFlow here whatever KERAS_BACKEND says (torch may be installed
    beside it); TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's C++ info and warnings out of the
    job's log (errors still show).
    """
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# What TensorFlow's C++ prints at import, before its logging is set up: TF_CPP_MIN_LOG_LEVEL
# does not hold it back there (it does on some CPUs and builds, not on others).
IMPORT_NOTICES = (
    "All log messages before absl::InitializeLog",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
)


def _module(name: str) -> Any:
    module = f"aijobs.runtimes.tensorflow.{name}"
    if module in sys.modules:
        return sys.modules[module]
    _environment()
    # Keep TensorFlow's start-up notices out of the job's log; anything else goes through.
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return importlib.import_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(notice in line for notice in IMPORT_NOTICES):
                    sys.stderr.write(line)
            sys.stderr.flush()


class TensorFlowRuntime:
    name = "tensorflow"
    framework = "tensorflow"
    model_types = MODEL_TYPES

    def missing(self) -> str | None:
        return missing_packages(REQUIRED, "TensorFlow", "tensorflow")

    def framework_version(self) -> str:
        for dist in DISTRIBUTIONS:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return "unknown"

    def check_hyperparameters(
        self,
        model_type: str,
        hyperparameters: dict[str, Any],
        ceilings: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        if model_type not in MODEL_TYPES:
            raise errors.JobFailure(
                f"the tensorflow runtime cannot train {model_type!r}; it trains "
                + ", ".join(sorted(MODEL_TYPES))
            )
        return tf_params.check(model_type, hyperparameters, ceilings)

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        self.check_hyperparameters(model_type, hyperparameters)  # fail before the heavy imports
        result: TrainResult = _module("train").train(model_type, data_path, hyperparameters, ctx)
        return result

    def load(self, model_dir: Path) -> Any:
        return _module("infer").load(model_dir)

    def predict(
        self, model: Any, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
    ) -> dict[str, Any]:
        if getattr(model, "runtime", None) != "tensorflow":
            raise errors.JobFailure("not a model loaded by the tensorflow runtime")
        if not isinstance(parameters, dict):
            raise errors.JobFailure("parameters must be a JSON object")
        out: dict[str, Any] = _module("infer").predict(model, input_data, parameters, data_roots)
        return out
