"""The scikit-learn runtime: random forests, SVMs and logistic regression on CSV tables.

Training reads a CSV with a header, picks the target column, and fits one Pipeline (imputation,
one-hot encoding of categorical columns, TF-IDF for free-text columns, scaling where the model
needs it, then the estimator), so inference applies exactly the same encoding. Models are saved
with skops, never pickle, and loaded back only when every type in the file is on an allow-list.

sklearn, pandas and skops are imported inside the methods only: the API process imports this
module for plugin discovery and must stay light.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aijobs import datapaths, errors
from aijobs.runtimes.base import TrainContext, TrainResult

MODEL_FILE = "model.skops"
META_FILE = "meta.json"
RESERVED = ("target_column", "test_size", "random_state")
TARGET_FALLBACKS = ("label", "target")
MIN_ROWS = 5
MAX_CLASSES_FOR_INT_TARGET = 20
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
TRUSTED_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool")
)
# Runtime defaults the user may override: enough iterations that scaled data converges.
DEFAULTS: dict[str, dict[str, Any]] = {"logistic_regression": {"max_iter": 1000}}


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


def _json_safe(value: Any) -> Any:
    """numpy scalars to Python ones, non-finite floats to None."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class SklearnRuntime:
    name = "sklearn"
    framework = "sklearn"
    model_types = frozenset({"random_forest", "svm", "logistic_regression"})

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

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        import sklearn
        import skops.io as sio

        if model_type not in self.model_types:
            raise errors.JobFailure(
                f"the sklearn runtime cannot train {model_type!r}; it trains "
                + ", ".join(sorted(self.model_types))
            )
        hp = dict(hyperparameters)
        target_column = hp.pop("target_column", None)
        test_size = _test_size(hp.pop("test_size", 0.2))
        random_state = _random_state(hp.pop("random_state", 42))

        frame = _read_csv(data_path)
        target = _pick_target(frame, target_column)
        frame = frame[frame[target].notna()]
        features = [c for c in frame.columns if c != target]
        if len(frame) < MIN_ROWS:
            raise errors.JobFailure(
                f"too few rows to split into training and validation sets: {len(frame)} rows "
                f"with a {target!r} value, need at least {MIN_ROWS}"
            )
        task, y = _target_values(frame[target], model_type)
        kinds = _feature_kinds(frame[features])
        X = _prepare(frame[features], kinds)
        ctx.report(0.1, {"n_rows": len(frame), "n_features": len(features)})

        estimator = _estimator(model_type, task, hp, random_state)
        X_train, X_val, y_train, y_val = _split(X, y, task, test_size, random_state)
        if task == "classification" and model_type == "svm":
            estimator = _calibrated(estimator, y_train)
        pipeline = _pipeline(kinds, model_type, estimator)
        ctx.report(0.2)

        fit_warnings = _fit(pipeline, X_train, y_train)
        ctx.report(0.8)

        metrics = _evaluate(pipeline, task, X_val, y_val)
        metrics.update(n_train=len(X_train), n_validation=len(X_val))
        classes = [_json_safe(c) for c in pipeline.classes_] if task == "classification" else []
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
        X = _input_frame(input_data, meta, data_roots)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. categories never seen in training
            return _predict(model.pipeline, X, probability)


def _predict(pipeline: Any, X: Any, probability: bool) -> dict[str, Any]:
    try:
        predictions = pipeline.predict(X)
        out: dict[str, Any] = {
            "predictions": [_json_safe(p) for p in predictions],
            "n_rows": len(X),
        }
        if probability:
            labels = [str(_json_safe(c)) for c in pipeline.classes_]
            out["probabilities"] = [
                {label: float(p) for label, p in zip(labels, row, strict=True)}
                for row in pipeline.predict_proba(X)
            ]
    except (ValueError, TypeError) as exc:
        raise errors.JobFailure(f"prediction failed: {exc}") from exc
    return out


# ---------------------------------------------------------------------------- training steps


def _test_size(value: Any) -> float | int:
    if isinstance(value, float) and 0 < value < 1:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise errors.JobFailure(
        f"hyperparameter 'test_size' must be a fraction between 0 and 1 or a row count >= 1, "
        f"got {value!r}"
    )


def _random_state(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    raise errors.JobFailure(
        f"hyperparameter 'random_state' must be an integer in [0, 2**32) or null, got {value!r}"
    )


def _read_csv(data_path: Path) -> Any:
    import pandas as pd

    name = data_path.name
    if data_path.is_dir():
        raise errors.JobFailure(
            f"data_path {name!r} is a directory; the sklearn runtime needs a CSV file"
        )
    try:
        frame = pd.read_csv(data_path, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise errors.JobFailure(f"data file {name!r} is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise errors.JobFailure(f"data file {name!r} is not a readable CSV: {exc}") from exc
    except OSError as exc:
        raise errors.JobFailure(f"data file {name!r} cannot be read: {exc.strerror}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise errors.JobFailure(f"data file {name!r} has a header but no rows")
    if len(frame.columns) < 2:
        raise errors.JobFailure(
            f"data file {name!r} has {len(frame.columns)} column; it needs at least one "
            "feature column and a target column"
        )
    if all(_is_number(c) for c in frame.columns):
        raise errors.JobFailure(
            f"data file {name!r} has no header row (its first row is all numbers); "
            "add a header naming the columns"
        )
    return frame


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pick_target(frame: Any, target_column: Any) -> str:
    columns = list(frame.columns)
    if target_column is not None:
        if not isinstance(target_column, str) or target_column not in columns:
            raise errors.JobFailure(
                f"target_column {target_column!r} is not a column of the CSV; columns: "
                + ", ".join(columns)
            )
        return target_column
    for name in TARGET_FALLBACKS:
        if name in columns:
            return name
    return str(columns[-1])


def _target_values(series: Any, model_type: str) -> tuple[str, Any]:
    """('classification'|'regression', y) as the target's values decide."""
    import numpy as np
    import pandas as pd

    name = series.name
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        task = "classification"
        y = series.astype(bool) if pd.api.types.is_bool_dtype(series) else series.astype(str)
    else:
        values = series.to_numpy(dtype=float)
        distinct = np.unique(values)
        integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
        few = len(distinct) <= MAX_CLASSES_FOR_INT_TARGET and len(distinct) < 0.5 * len(values)
        if integral and few:
            task, y = "classification", series.astype("int64")
        else:
            task, y = "regression", series.astype(float)
    if task == "classification" and y.nunique() < 2:
        raise errors.JobFailure(
            f"target column {name!r} has a single class ({y.iloc[0]!r}); "
            "classification needs at least two"
        )
    if task == "regression" and model_type == "logistic_regression":
        raise errors.JobFailure(
            f"logistic regression needs a categorical target, but {name!r} is continuous "
            "(use random_forest or svm for regression)"
        )
    return task, y.to_numpy()


def _feature_kinds(features: Any) -> dict[str, str]:
    """Each feature column: 'numeric', 'categorical', or 'text' (free text -> TF-IDF)."""
    import pandas as pd

    kinds: dict[str, str] = {}
    for name in features.columns:
        col = features[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            kinds[name] = "numeric"
            continue
        values = col.dropna().astype(str)
        words = values.str.split().str.len().mean() if len(values) else 0.0
        unique = values.nunique() / max(len(values), 1)
        kinds[name] = "text" if words >= 3 and unique > 0.5 else "categorical"
    return kinds


def _prepare(features: Any, kinds: dict[str, str]) -> Any:
    """Columns cast the way training saw them: floats, strings with NaN kept, or text with ''."""
    import numpy as np

    out = features.copy()
    for name, kind in kinds.items():
        col = out[name]
        if kind == "numeric":
            out[name] = col.astype(float)
        else:
            cast = col.astype(object).map(lambda v: v if _is_missing(v) else str(v))
            if kind == "text":
                cast = cast.map(lambda v: "" if _is_missing(v) else v)
            else:
                cast = cast.map(lambda v: np.nan if _is_missing(v) else v)
            out[name] = cast.astype(object)
    return out


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _estimator(model_type: str, task: str, hp: dict[str, Any], random_state: int | None) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, SVR

    classes: dict[tuple[str, str], Any] = {
        ("random_forest", "classification"): RandomForestClassifier,
        ("random_forest", "regression"): RandomForestRegressor,
        ("svm", "classification"): SVC,
        ("svm", "regression"): SVR,
        ("logistic_regression", "classification"): LogisticRegression,
    }
    estimator = classes[model_type, task]()
    valid = set(estimator.get_params(deep=False))
    unknown = sorted(set(hp) - valid)
    if unknown:
        raise errors.JobFailure(
            f"unknown hyperparameter(s) for {model_type}: {', '.join(unknown)}; valid: "
            + ", ".join(sorted(valid | set(RESERVED)))
        )
    params = {**DEFAULTS.get(model_type, {}), **hp}
    if "random_state" in valid:
        params["random_state"] = random_state
    return estimator.set_params(**params)


def _split(X: Any, y: Any, task: str, test_size: float | int, seed: int | None) -> Any:
    import numpy as np
    from sklearn.model_selection import train_test_split

    n = len(y)
    n_test = test_size if isinstance(test_size, int) else math.ceil(test_size * n)
    if n_test >= n - 1:
        raise errors.JobFailure(
            f"test_size {test_size!r} leaves too few of the {n} rows for training"
        )
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and len(counts) <= min(n_test, n - n_test):
            stratify = y
    try:
        parts = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise errors.JobFailure(f"cannot split the data for validation: {exc}") from exc
    if task == "classification" and len(np.unique(parts[2])) < 2:
        raise errors.JobFailure(
            "the training split holds a single class; add more rows of each class"
        )
    return parts


def _calibrated(svc: Any, y_train: Any) -> Any:
    """SVC with probabilities: CalibratedClassifierCV (SVC(probability=True) is deprecated)."""
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV

    smallest = int(np.unique(y_train, return_counts=True)[1].min())
    if smallest < 2:  # too few examples of a class to calibrate on held-out folds
        return svc
    return CalibratedClassifierCV(svc, cv=min(3, smallest))


def _pipeline(kinds: dict[str, str], model_type: str, estimator: Any) -> Any:
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVR

    scale = model_type in ("svm", "logistic_regression")
    numeric = [n for n, k in kinds.items() if k == "numeric"]
    categorical = [n for n, k in kinds.items() if k == "categorical"]
    text = [n for n, k in kinds.items() if k == "text"]
    parts: list[tuple[str, Any, Any]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if scale:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        encode = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore")),
            ]
        )
        parts.append(("categorical", encode, categorical))
    for i, name in enumerate(text):
        parts.append((f"text{i}", TfidfVectorizer(sublinear_tf=True), name))
    if isinstance(estimator, SVR):  # SVR's epsilon and C assume a target of unit scale
        estimator = TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler())
    return Pipeline([("prepare", ColumnTransformer(parts)), ("model", estimator)])


def _fit(pipeline: Any, X: Any, y: Any) -> list[str]:
    """Fit; sklearn's parameter errors become JobFailure; warnings come back as strings."""
    from sklearn.utils._param_validation import InvalidParameterError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pipeline.fit(X, y)
        except InvalidParameterError as exc:
            raise errors.JobFailure(f"invalid hyperparameter: {exc}") from exc
        except (ValueError, TypeError) as exc:
            raise errors.JobFailure(f"training failed: {exc}") from exc
    messages: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
        if text not in messages:
            messages.append(text)
    return messages[:5]


def _evaluate(pipeline: Any, task: str, X: Any, y: Any) -> dict[str, Any]:
    from sklearn import metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = pipeline.predict(X)
        if task == "classification":
            scores = {
                "accuracy": metrics.accuracy_score(y, predicted),
                "f1": metrics.f1_score(y, predicted, average="macro", zero_division=0),
            }
        else:
            scores = {
                "r2": metrics.r2_score(y, predicted),
                "rmse": metrics.root_mean_squared_error(y, predicted),
                "mae": metrics.mean_absolute_error(y, predicted),
            }
    return {k: _json_safe(float(v)) for k, v in scores.items()}


# ------------------------------------------------------------------------------ inference input


def _input_frame(input_data: str, meta: dict[str, Any], data_roots: list[Path]) -> Any:
    import pandas as pd

    names: list[str] = list(meta["feature_names"])
    kinds: dict[str, str] = meta["feature_kinds"]
    text = input_data.strip() if isinstance(input_data, str) else ""
    if not text:
        raise errors.JobFailure("input_data is empty")
    if text[0] in "[{":
        rows = _json_rows(text, names)
    elif "\n" not in text and text.lower().endswith(".csv") and text.count(",") == 0:
        rows = _csv_file_rows(text, names, meta.get("target_column"), data_roots)
    else:
        rows = _text_rows(text, names, kinds)
    typed = [_typed_row(i, row, names, kinds, len(rows)) for i, row in enumerate(rows)]
    frame = pd.DataFrame(typed)
    return _prepare(frame.reindex(columns=names), kinds)


def _expected(names: list[str]) -> str:
    plural = "" if len(names) == 1 else "s"
    return f"expected {len(names)} feature{plural} ({', '.join(names)})"


def _json_rows(text: str, names: list[str]) -> list[list[Any]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise errors.JobFailure(f"input_data is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise errors.JobFailure("input_data JSON must be a non-empty list or an object")
    if not any(isinstance(item, list | dict) for item in data):
        # a flat list is one row, or for a one-feature model one value per row
        data = [[item] for item in data] if len(names) == 1 else [data]
    rows: list[list[Any]] = []
    for i, item in enumerate(data, 1):
        if isinstance(item, list):
            rows.append(item)
        elif isinstance(item, dict):
            unknown = sorted(set(item) - set(names))
            absent = [n for n in names if n not in item]
            if unknown or absent:
                raise errors.JobFailure(
                    f"row {i}: {_expected(names)}"
                    + (f"; missing: {', '.join(absent)}" if absent else "")
                    + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                )
            rows.append([item[n] for n in names])
        else:
            raise errors.JobFailure(f"row {i}: expected a list of values or an object")
    return rows


def _text_rows(text: str, names: list[str], kinds: dict[str, str]) -> list[list[Any]]:
    """CSV rows split by newlines or ';' - except for one free-text feature: a line each."""
    if len(names) == 1 and kinds[names[0]] == "text":
        return [[line.strip()] for line in text.splitlines() if line.strip()]
    lines = [line for line in text.replace(";", "\n").splitlines() if line.strip()]
    rows = [[cell.strip() for cell in row] for row in csv.reader(lines)]
    if rows and rows[0] == names:  # a header row naming the features
        rows = rows[1:]
    if not rows:
        raise errors.JobFailure("input_data holds no rows")
    return rows


def _csv_file_rows(
    text: str, names: list[str], target: Any, data_roots: list[Path]
) -> list[list[Any]]:
    import pandas as pd

    try:
        path = datapaths.resolve_data_path(text, data_roots)
        frame = pd.read_csv(path, skipinitialspace=True)
    except errors.AIJobsError as exc:
        raise errors.JobFailure(exc.detail) from exc
    except (OSError, ValueError) as exc:
        raise errors.JobFailure(f"cannot read input CSV {text!r}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.drop(columns=[target], errors="ignore")
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise errors.JobFailure(f"input CSV lacks feature columns: {', '.join(absent)}")
    rows: list[list[Any]] = frame[names].astype(object).values.tolist()
    return rows


def _typed_row(
    index: int, row: list[Any], names: list[str], kinds: dict[str, str], total: int
) -> dict[str, Any]:
    where = f"row {index + 1}: " if total > 1 else ""
    if len(row) != len(names):
        raise errors.JobFailure(f"{where}{_expected(names)}, got {len(row)}")
    out: dict[str, Any] = {}
    for name, value in zip(names, row, strict=True):
        if kinds[name] != "numeric":
            out[name] = None if value is None or value == "" else value
            continue
        if value is None or (isinstance(value, str) and value.lower() in ("", "nan", "na", "null")):
            out[name] = math.nan
            continue
        try:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise errors.JobFailure(
                f"{where}feature {name!r} must be a number, got {value!r}"
            ) from None
    return out
