"""The scikit-learn runtime: random forests, SVMs and logistic regression on CSV tables.

Training reads a CSV with a header, picks the target column, and fits one Pipeline (imputation,
one-hot encoding of categorical columns, TF-IDF for free-text columns, scaling where the model
needs it, then the estimator), so inference applies exactly the same encoding. Models are saved
with skops, never pickle, and loaded back only when every type in the file is on an allow-list.

sklearn, pandas and skops are imported inside the methods only: the API process imports this
module for plugin discovery and must stay light.
"""

from __future__ import annotations

import importlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aijobs import errors
from aijobs.model_types import served_by
from aijobs.runtimes.base import TrainContext, TrainResult
from aijobs.runtimes.sklearn import estimators, params, tables

MODEL_FILE = "model.skops"
META_FILE = "meta.json"
MIN_ROWS = 5
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
TRUSTED_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool")
)


@dataclass
class SklearnModel:
    """What `load` returns: the fitted pipeline and the facts saved beside it."""

    pipeline: Any
    meta: dict[str, Any]


def is_trusted_type(name: str) -> bool:
    """The allow-list: builtin collections and scalars, or a class from sklearn, numpy, scipy.

    Functions are refused even from those packages (a FunctionTransformer(numpy.load) is not a
    model we wrote): the name must resolve, by import, to a class.
    """
    if name in TRUSTED_BUILTINS:
        return True
    if not name.startswith(TRUSTED_PREFIXES):
        return False
    module_name, _, attr = name.rpartition(".")
    parts = module_name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in [*parts[cut:], attr]:
                obj = getattr(obj, part)
        except AttributeError:
            return False
        return isinstance(obj, type)
    return False


def _valid_meta(meta: Any) -> bool:
    """meta.json holds the feature names and a known kind for each."""
    if not isinstance(meta, dict) or meta.get("task") not in ("classification", "regression"):
        return False
    names, kinds = meta.get("feature_names"), meta.get("feature_kinds")
    return (
        isinstance(names, list)
        and isinstance(kinds, dict)
        and all(isinstance(n, str) and n in kinds for n in names)
        and all(k in ("numeric", "categorical", "text") for k in kinds.values())
    )


class SklearnRuntime:
    name = "sklearn"
    framework = "sklearn"
    model_types = served_by("sklearn")

    def missing(self) -> str | None:
        try:
            importlib.import_module("sklearn")
            importlib.import_module("skops.io")
            importlib.import_module("pandas")
        except ImportError:
            return "scikit-learn runtime not installed: pip install 'aijobs[sklearn]'"
        return None

    def framework_version(self) -> str:
        import sklearn

        return str(sklearn.__version__)

    # ----------------------------------------------------------------------------- training

    def check_hyperparameters(
        self,
        model_type: str,
        hyperparameters: dict[str, Any],
        ceilings: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        return params.check(model_type, hyperparameters, ceilings)

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        import sklearn
        import skops.io as sio

        hp = self.check_hyperparameters(model_type, hyperparameters)
        target_column = hp.pop("target_column", None)
        test_size = hp.pop("test_size", 0.2)
        random_state = estimators.parse_random_state(hp.pop("random_state", 42))

        frame = tables.read_csv(data_path)
        target = tables.pick_target(frame, target_column)
        frame = frame[frame[target].notna()]
        features = [c for c in frame.columns if c != target]
        if len(frame) < MIN_ROWS:
            raise errors.JobFailure(
                f"too few rows to split into training and validation sets: {len(frame)} rows "
                f"with a {target!r} value, need at least {MIN_ROWS}"
            )
        task, y = tables.target_values(frame[target], model_type)
        kinds = tables.feature_kinds(frame[features])
        X = tables.prepare(frame[features], kinds)
        ctx.report(0.1, {"n_rows": len(frame), "n_features": len(features)})

        estimator = estimators.build_estimator(model_type, task, hp, random_state)
        X_train, X_val, y_train, y_val = estimators.split(X, y, task, test_size, random_state)
        if task == "classification" and model_type == "svm":
            estimator = estimators.calibrated(estimator, y_train)
        pipeline = estimators.build_pipeline(kinds, model_type, estimator)
        ctx.report(0.2)

        fit_warnings = estimators.fit(pipeline, X_train, y_train)
        ctx.report(0.8)

        metrics = estimators.evaluate(pipeline, task, X_val, y_val)
        metrics.update(n_train=len(X_train), n_validation=len(X_val))
        classes = (
            [estimators.json_safe(c) for c in pipeline.classes_] if task == "classification" else []
        )
        info: dict[str, Any] = {
            "task": task,
            "classes": classes,
            "feature_names": features,
            "n_features": len(features),
            "target_column": target,
        }
        if fit_warnings:
            info["warnings"] = fit_warnings
        meta = {
            **info,
            "feature_kinds": kinds,
            "model_type": model_type,
            "estimator": type(pipeline[-1]).__name__,
            "probability": hasattr(pipeline[-1], "predict_proba"),
            "sklearn_version": sklearn.__version__,
            "hyperparameters": hyperparameters,
        }
        sio.dump(pipeline, ctx.model_dir / MODEL_FILE)
        (ctx.model_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        ctx.report(1.0, metrics, epoch=1)
        return TrainResult(metrics=metrics, info=info)

    # ---------------------------------------------------------------------------- inference

    def load(self, model_dir: Path) -> SklearnModel:
        import skops.io as sio

        path = model_dir / MODEL_FILE
        try:
            meta = json.loads((model_dir / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise errors.JobFailure(f"model metadata is missing or unreadable: {exc}") from exc
        if not _valid_meta(meta):
            raise errors.JobFailure(f"model metadata {META_FILE} is not from the sklearn runtime")
        if not path.is_file():
            raise errors.JobFailure(f"model file {MODEL_FILE} is missing")
        try:
            found = sio.get_untrusted_types(file=path)
        except Exception as exc:  # a pickle, a truncated zip, a bad schema: all refused
            raise errors.JobFailure(f"model file is not a valid skops file: {exc}") from exc
        refused = [t for t in found if not is_trusted_type(t)]
        if refused:
            raise errors.JobFailure("model file contains untrusted types: " + ", ".join(refused))
        try:
            pipeline = sio.load(path, trusted=found)
        except Exception as exc:
            raise errors.JobFailure(f"model file could not be loaded: {exc}") from exc
        return SklearnModel(pipeline=pipeline, meta=meta)

    def predict(
        self, model: Any, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
    ) -> dict[str, Any]:
        if not isinstance(model, SklearnModel):
            raise errors.JobFailure("not a model loaded by the sklearn runtime")
        probability = parameters.get("probability", False)
        if not isinstance(probability, bool):
            raise errors.JobFailure(
                f"parameter 'probability' must be true or false, got {probability!r}"
            )
        meta = model.meta
        if probability and meta.get("task") != "classification":
            raise errors.JobFailure("probabilities are only available for classification models")
        if probability and not meta.get("probability", True):
            raise errors.JobFailure(
                "this model gives no probabilities: a class had fewer than 2 training examples "
                "to calibrate the svm on"
            )
        X = tables.input_frame(input_data, meta, data_roots)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. categories never seen in training
            return estimators.predict(model.pipeline, X, probability)
