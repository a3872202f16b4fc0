"""The model of the scikit-learn runtime: the estimator each model type names, the split, the
Pipeline that encodes the features, fitting, held-out metrics and predictions.

scikit-learn is imported inside the functions: the runtime's plugin module imports this one.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from aijobs import errors

RESERVED = ("target_column", "test_size", "random_state")
# Runtime defaults the user may override: enough iterations that scaled data converges.
DEFAULTS: dict[str, dict[str, Any]] = {"logistic_regression": {"max_iter": 1000}}


def parse_test_size(value: Any) -> float | int:
    if isinstance(value, float) and 0 < value < 1:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise errors.JobFailure(
        f"hyperparameter 'test_size' must be a fraction between 0 and 1 or a row count >= 1, "
        f"got {value!r}"
    )


def parse_random_state(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    raise errors.JobFailure(
        f"hyperparameter 'random_state' must be an integer in [0, 2**32) or null, got {value!r}"
    )


def build_estimator(
    model_type: str, task: str, hp: dict[str, Any], random_state: int | None
) -> Any:
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


def split(X: Any, y: Any, task: str, test_size: float | int, seed: int | None) -> Any:
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


def calibrated(svc: Any, y_train: Any) -> Any:
    """SVC with probabilities: CalibratedClassifierCV (SVC(probability=True) is deprecated)."""
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV

    smallest = int(np.unique(y_train, return_counts=True)[1].min())
    if smallest < 2:  # too few examples of a class to calibrate on held-out folds
        return svc
    return CalibratedClassifierCV(svc, cv=min(3, smallest))


def build_pipeline(kinds: dict[str, str], model_type: str, estimator: Any) -> Any:
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


def fit(pipeline: Any, X: Any, y: Any) -> list[str]:
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


def evaluate(pipeline: Any, task: str, X: Any, y: Any) -> dict[str, Any]:
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
    return {k: json_safe(float(v)) for k, v in scores.items()}


def json_safe(value: Any) -> Any:
    """numpy scalars to Python ones, non-finite floats to None."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def predict(pipeline: Any, X: Any, probability: bool) -> dict[str, Any]:
    try:
        predictions = pipeline.predict(X)
        out: dict[str, Any] = {
            "predictions": [json_safe(p) for p in predictions],
            "n_rows": len(X),
        }
        if probability:
            labels = [str(json_safe(c)) for c in pipeline.classes_]
            out["probabilities"] = [
                {label: float(p) for label, p in zip(labels, row, strict=True)}
                for row in pipeline.predict_proba(X)
            ]
    except (ValueError, TypeError) as exc:
        raise errors.JobFailure(f"prediction failed: {exc}") from exc
    return out
