"""Hyperparameters of the scikit-learn runtime: an allow-list per model type, checked by the
runtimes' shared validator (`aijobs.runtimes.params`) in the API at submission and again in the
worker before anything is fitted.

An allow-list rather than whatever the estimator's get_params() names: parameters that spend
the worker's machine beyond its one slot (n_jobs), flood its log (verbose) or change what is
fitted behind the runtime's back (warm_start) are not for users to set. Light: no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aijobs import errors
from aijobs.runtimes.params import SEED_MAX, Param, integer, number, one_of, param, validate
from aijobs.runtimes.sklearn.estimators import parse_test_size

CLASS_WEIGHT = param(str, None, one_of("balanced", "balanced_subsample"), nullable=True)
TOLERANCE = param(float, None, number(0, 1, low_open=True), nullable=True)

FOREST: dict[str, Param] = {
    "n_estimators": param(int, None, integer(1, 1_000_000)),
    "max_depth": param(int, None, integer(1, 100_000), nullable=True),
    "min_samples_split": param(int, None, integer(2, 1_000_000)),
    "min_samples_leaf": param(int, None, integer(1, 1_000_000)),
    "max_features": param(str, None, one_of("sqrt", "log2"), nullable=True),
    "max_leaf_nodes": param(int, None, integer(2, 1_000_000), nullable=True),
    "min_impurity_decrease": param(float, None, number(0, 1e6)),
    "criterion": param(
        str,
        None,
        one_of("gini", "entropy", "log_loss", "squared_error", "absolute_error", "friedman_mse"),
    ),
    "bootstrap": param(bool, None),
    "max_samples": param(float, None, number(0, 1, low_open=True), nullable=True),
    "ccp_alpha": param(float, None, number(0, 1e6)),
    "class_weight": CLASS_WEIGHT,
}
SVM: dict[str, Param] = {
    "C": param(float, None, number(0, 1e6, low_open=True)),
    "kernel": param(str, None, one_of("linear", "poly", "rbf", "sigmoid")),
    "degree": param(int, None, integer(1, 10)),
    "gamma": param(str, None, one_of("scale", "auto")),
    "coef0": param(float, None, number(-1e6, 1e6)),
    "epsilon": param(float, None, number(0, 1e6)),
    "shrinking": param(bool, None),
    "tol": TOLERANCE,
    "max_iter": param(int, None, integer(1, 10_000_000)),
    "class_weight": CLASS_WEIGHT,
}
LOGISTIC: dict[str, Param] = {
    "C": param(float, None, number(0, 1e6, low_open=True)),
    "penalty": param(str, None, one_of("l1", "l2", "elasticnet"), nullable=True),
    "solver": param(
        str, None, one_of("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")
    ),
    "l1_ratio": param(float, None, number(0, 1), nullable=True),
    "fit_intercept": param(bool, None),
    "tol": TOLERANCE,
    "max_iter": param(int, None, integer(1, 10_000_000)),
    "class_weight": CLASS_WEIGHT,
}
ESTIMATORS: dict[str, dict[str, Param]] = {
    "random_forest": FOREST,
    "svm": SVM,
    "logistic_regression": LOGISTIC,
}
# The runtime's own settings, beside the estimator's (test_size: a fraction or a row count).
RESERVED: dict[str, Param] = {
    "target_column": param(str, None, nullable=True),
    "random_state": param(int, None, integer(0, SEED_MAX), nullable=True),
}


def check(
    model_type: str, given: Mapping[str, Any], ceilings: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The hyperparameters given, checked: JobFailure naming each bad one. Only those given
    come back (the estimator's own defaults apply to the rest)."""
    if model_type not in ESTIMATORS:
        raise errors.JobFailure(
            f"the sklearn runtime cannot train {model_type!r}; it trains "
            + ", ".join(sorted(ESTIMATORS))
        )
    if not isinstance(given, Mapping):
        raise errors.JobFailure(f"hyperparameters must be a JSON object, got {given!r}")
    rest = {name: value for name, value in given.items() if name != "test_size"}
    accepted = {**ESTIMATORS[model_type], **RESERVED, "test_size": param(float, 0.2)}
    checked = validate(rest, accepted, ceilings=ceilings)
    out = {name: checked[name] for name in rest}
    if "test_size" in given:
        out["test_size"] = parse_test_size(given["test_size"])
    return out
