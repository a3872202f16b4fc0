"""The scikit-learn runtime: trains on real (bundled) data, saves with skops, loads safely."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from aijobs import errors
from aijobs.demo import write_demo_data
from aijobs.runtimes import base
from aijobs.runtimes.sklearn.runtime import SklearnRuntime, is_trusted_type
from tests.runtime_support import FakeContext

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    write_demo_data(directory)
    return directory


@pytest.fixture
def runtime() -> SklearnRuntime:
    return SklearnRuntime()


def _ctx(tmp_path: Path) -> FakeContext:
    model_dir = tmp_path / "model"
    model_dir.mkdir(parents=True)
    return FakeContext(model_dir=model_dir, data_roots=[tmp_path])


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def iris_model(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random forest trained on the demo iris data, saved to a directory."""
    model_dir = tmp_path_factory.mktemp("iris_model")
    SklearnRuntime().train(
        "random_forest", data / "tabular_data.csv", {"n_estimators": 30}, FakeContext(model_dir)
    )
    return model_dir


# ------------------------------------------------------------------------------ plugin facts


def test_runtime_is_discovered_as_a_plugin() -> None:
    runtimes = base.discover()
    assert isinstance(runtimes["sklearn"], SklearnRuntime)
    assert isinstance(runtimes["sklearn"], base.Runtime)
    assert runtimes["sklearn"].model_types == {"random_forest", "svm", "logistic_regression"}


def test_importing_the_runtime_stays_light() -> None:
    code = (
        "import sys, aijobs.runtimes.sklearn.runtime as m; m.SklearnRuntime();"
        "heavy = [n for n in ('sklearn', 'pandas', 'skops', 'numpy') if n in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_missing_and_version(runtime: SklearnRuntime) -> None:
    assert runtime.missing() is None
    assert runtime.framework_version() == sklearn.__version__


# --------------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    ("model_type", "hyperparameters"),
    [
        # the spec's example request, verbatim
        ("random_forest", {"n_estimators": 100, "max_depth": 10, "min_samples_split": 5}),
        ("svm", {"C": 1.0, "kernel": "rbf"}),
        ("logistic_regression", {"C": 1.0}),
    ],
)
def test_each_model_type_learns_iris(
    runtime: SklearnRuntime,
    data: Path,
    tmp_path: Path,
    model_type: str,
    hyperparameters: dict[str, Any],
) -> None:
    ctx = _ctx(tmp_path)
    result = runtime.train(model_type, data / "tabular_data.csv", hyperparameters, ctx)

    assert result.metrics["accuracy"] > 0.8  # chance is 1/3
    assert 0.8 < result.metrics["f1"] <= 1.0
    assert result.metrics["n_train"] == 120
    assert result.metrics["n_validation"] == 30
    assert result.info == {
        "task": "classification",
        "classes": SPECIES,
        "feature_names": IRIS_FEATURES,
        "n_features": 4,
        "target_column": "label",
    }
    assert sorted(p.name for p in ctx.model_dir.iterdir()) == ["meta.json", "model.skops"]
    meta = json.loads((ctx.model_dir / "meta.json").read_text())
    assert meta["sklearn_version"] == sklearn.__version__
    assert meta["model_type"] == model_type
    fractions = [r[0] for r in ctx.reports]
    assert fractions == sorted(fractions)
    assert fractions[0] <= 0.1
    assert fractions[-1] == 1.0
    assert ctx.reports[-1] == (1.0, result.metrics, 1)
    json.dumps(result.metrics), json.dumps(result.info)  # JSON-safe


def test_training_is_reproducible_with_random_state(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    hp = {"n_estimators": 10, "random_state": 7}
    first = runtime.train("random_forest", data / "regression.csv", hp, _ctx(tmp_path / "a"))
    second = runtime.train("random_forest", data / "regression.csv", hp, _ctx(tmp_path / "b"))
    assert first.metrics == second.metrics


@pytest.mark.parametrize("model_type", ["random_forest", "svm"])
def test_regression_on_diabetes(
    runtime: SklearnRuntime, data: Path, tmp_path: Path, model_type: str
) -> None:
    result = runtime.train(model_type, data / "regression.csv", {}, _ctx(tmp_path))
    assert result.info["task"] == "regression"
    assert result.info["classes"] == []
    assert result.metrics["r2"] > 0.2
    assert result.metrics["rmse"] > 0
    model = runtime.load(tmp_path / "model")
    out = runtime.predict(model, "59,2,32.1,101,157,93.2,38,4,4.8598,87", {}, [])
    assert out["n_rows"] == 1
    assert 25 <= out["predictions"][0] <= 346


def test_logistic_regression_needs_a_categorical_target(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    with pytest.raises(errors.JobFailure, match="logistic regression needs a categorical target"):
        runtime.train("logistic_regression", data / "regression.csv", {}, _ctx(tmp_path))


def _color_rows(n: int) -> str:
    """label = 'yes' exactly when color is red; size is noise; some sizes missing."""
    rng = np.random.default_rng(0)
    lines = ["color,size,label"]
    for i in range(n):
        color = ["red", "green", "blue"][i % 3]
        size = "" if i % 17 == 0 else f"{rng.normal():.3f}"
        lines.append(f"{color},{size},{'yes' if color == 'red' else 'no'}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("model_type", ["random_forest", "svm", "logistic_regression"])
def test_categorical_features_missing_values_and_string_target(
    runtime: SklearnRuntime, tmp_path: Path, model_type: str
) -> None:
    ctx = _ctx(tmp_path)
    result = runtime.train(model_type, _csv(tmp_path, _color_rows(90)), {}, ctx)
    assert result.metrics["accuracy"] == 1.0
    assert result.info["classes"] == ["no", "yes"]
    model = runtime.load(ctx.model_dir)
    out = runtime.predict(model, "red,0.1;blue,;purple,2", {"probability": True}, [])
    assert out["predictions"][:2] == ["yes", "no"]  # an unseen color still predicts
    assert out["predictions"][2] in ("yes", "no")


def test_integer_target_is_classification_with_integer_classes(
    runtime: SklearnRuntime, tmp_path: Path
) -> None:
    lines = ["x,y,kind"] + [f"{i % 3 + 0.1 * (i % 5)},{i % 7},{i % 3}" for i in range(60)]
    result = runtime.train("random_forest", _csv(tmp_path, "\n".join(lines)), {}, _ctx(tmp_path))
    assert result.info["task"] == "classification"
    assert result.info["classes"] == [0, 1, 2]
    out = runtime.predict(runtime.load(tmp_path / "model"), "2.2,3", {}, [])
    assert out["predictions"] == [2]
    assert isinstance(out["predictions"][0], int)


def test_target_column_picks_the_target_and_the_default_is_the_last_column(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    iris = (data / "tabular_data.csv").read_text().splitlines()
    # species first, named neither label nor target
    moved = [",".join([r.split(",")[-1], *r.split(",")[:-1]]) for r in iris]
    moved[0] = moved[0].replace("label", "species", 1)
    path = _csv(tmp_path, "\n".join(moved))
    result = runtime.train("svm", path, {"target_column": "species"}, _ctx(tmp_path / "a"))
    assert result.info["target_column"] == "species"
    assert result.metrics["accuracy"] > 0.8
    assert result.info["feature_names"] == IRIS_FEATURES
    # without target_column: no label/target column, so the last one (petal_width) is the target
    result = runtime.train("random_forest", path, {}, _ctx(tmp_path / "b"))
    assert result.info["target_column"] == "petal_width"


def test_free_text_column_is_learnt(runtime: SklearnRuntime, data: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    result = runtime.train("logistic_regression", data / "sentiment_analysis.csv", {}, ctx)
    assert result.metrics["accuracy"] > 0.9
    model = runtime.load(ctx.model_dir)
    out = runtime.predict(model, '["What a wonderful phone!", "This hotel is awful."]', {}, [])
    assert out["predictions"] == ["positive", "negative"]


# ------------------------------------------------------------------------- training failures


def test_unknown_hyperparameter_is_named_with_the_valid_ones(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        runtime.train("random_forest", data / "tabular_data.csv", {"epochs": 5}, _ctx(tmp_path))
    message = str(caught.value)
    assert "unknown hyperparameter" in message
    assert "epochs" in message
    assert "n_estimators" in message
    assert "max_depth" in message


@pytest.mark.parametrize(
    ("model_type", "name", "value"),
    [
        ("random_forest", "n_estimators", "abc"),
        ("random_forest", "n_estimators", -1),
        ("random_forest", "max_depth", 0),
        ("svm", "C", -1),
        ("svm", "kernel", "bogus"),
        ("logistic_regression", "C", "x"),
        ("random_forest", "n_estimators", 10**400),
        ("random_forest", "n_jobs", -1),
        ("svm", "verbose", True),
    ],
)
def test_invalid_hyperparameter_value_is_named(
    runtime: SklearnRuntime, data: Path, tmp_path: Path, model_type: str, name: str, value: Any
) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        runtime.train(model_type, data / "tabular_data.csv", {name: value}, _ctx(tmp_path))
    assert f"hyperparameter {name!r} must be" in str(caught.value) or (
        f"unknown hyperparameter: {name}" in str(caught.value)
    )


@pytest.mark.parametrize(
    ("hyperparameters", "expected"),
    [
        ({"test_size": 1.5}, "test_size"),
        ({"test_size": 0}, "test_size"),
        ({"test_size": 149}, "too few"),
        ({"random_state": "x"}, "random_state"),
        ({"random_state": True}, "random_state"),
        ({"target_column": "nope"}, "target_column 'nope' is not a column"),
    ],
)
def test_reserved_hyperparameters_are_checked(
    runtime: SklearnRuntime,
    data: Path,
    tmp_path: Path,
    hyperparameters: dict[str, Any],
    expected: str,
) -> None:
    with pytest.raises(errors.JobFailure, match=expected):
        runtime.train("random_forest", data / "tabular_data.csv", hyperparameters, _ctx(tmp_path))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("a,b,label\n", "no rows"),
        ("label\nx\ny\nx\ny\nx\ny\n", "needs at least one feature column"),
        ("a,label\n" + "".join(f"{i},same\n" for i in range(10)), "single class"),
        ("a,label\n1,x\n2,y\n3,x\n", "too few rows"),
        ("1,2\n3,4\n5,6\n7,8\n9,10\n11,12\n", "no header row"),
        ('a,label\n1,"unterminated\n2,x\n', "not a readable CSV"),
        (None, "not a readable CSV"),  # binary garbage
    ],
)
def test_bad_data_files_fail_clearly(
    runtime: SklearnRuntime, tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "data.csv"
    if content is None:
        path.write_bytes(bytes(range(256)) * 8)
    else:
        path.write_text(content)
    with pytest.raises(errors.JobFailure, match=expected):
        runtime.train("random_forest", path, {}, _ctx(tmp_path))


def test_directory_and_missing_file_fail_clearly(runtime: SklearnRuntime, tmp_path: Path) -> None:
    with pytest.raises(errors.JobFailure, match="is a directory"):
        runtime.train("random_forest", tmp_path, {}, _ctx(tmp_path))
    with pytest.raises(errors.JobFailure, match="cannot be read"):
        runtime.train("random_forest", tmp_path / "absent.csv", {}, _ctx(tmp_path / "a"))


def test_unsupported_model_type_fails(runtime: SklearnRuntime, data: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.JobFailure, match="cannot train 'bert'"):
        runtime.train("bert", data / "tabular_data.csv", {}, _ctx(tmp_path))


# -------------------------------------------------------------------------------- inference


def test_load_predict_with_probabilities(runtime: SklearnRuntime, iris_model: Path) -> None:
    model = runtime.load(iris_model)
    out = runtime.predict(
        model, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3", {"probability": True, "temperature": 0.7}, []
    )
    assert out["n_rows"] == 2
    assert out["predictions"] == ["setosa", "virginica"]
    for probabilities in out["probabilities"]:
        assert set(probabilities) == set(SPECIES)
        assert sum(probabilities.values()) == pytest.approx(1.0)
    assert out["probabilities"][0]["setosa"] > 0.8
    json.dumps(out)


def test_calibrated_svm_gives_probabilities(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    runtime.train("svm", data / "tabular_data.csv", {}, _ctx(tmp_path))
    out = runtime.predict(
        runtime.load(tmp_path / "model"), "6.7,3.0,5.2,2.3", {"probability": True}, []
    )
    assert out["predictions"] == ["virginica"]
    assert sum(out["probabilities"][0].values()) == pytest.approx(1.0)
    assert max(out["probabilities"][0], key=out["probabilities"][0].__getitem__) == "virginica"


@pytest.mark.parametrize(
    "input_data",
    [
        '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
        '[{"petal_width": 0.2, "petal_length": 1.4, "sepal_width": 3.5, "sepal_length": 5.1}]',
        "[[5.1, 3.5, 1.4, 0.2]]",
        "[5.1, 3.5, 1.4, 0.2]",
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2",
        " 5.1, 3.5, 1.4, 0.2 ;",
        '["5.1", "3.5", "1.4", "0.2"]',
    ],
)
def test_input_formats(runtime: SklearnRuntime, iris_model: Path, input_data: str) -> None:
    out = runtime.predict(runtime.load(iris_model), input_data, {}, [])
    assert out == {"predictions": ["setosa"], "n_rows": 1}


def test_input_from_a_csv_file_inside_the_data_roots(
    runtime: SklearnRuntime, iris_model: Path, data: Path
) -> None:
    out = runtime.predict(runtime.load(iris_model), str(data / "tabular_data.csv"), {}, [data])
    assert out["n_rows"] == 150
    truth = [line.rsplit(",", 1)[1] for line in (data / "tabular_data.csv").read_text().split()[1:]]
    agree = sum(p == t for p, t in zip(out["predictions"], truth, strict=True))
    assert agree / 150 > 0.9
    with pytest.raises(errors.JobFailure, match="outside the data roots"):
        runtime.predict(runtime.load(iris_model), "/etc/passwd.csv", {}, [data])


@pytest.mark.parametrize(
    ("input_data", "parameters", "expected"),
    [
        (
            "5.1,3.5,1.4",
            {},
            r"expected 4 features \(sepal_length, sepal_width, petal_length, petal_width\), got 3",
        ),
        ("5.1,3.5,1.4,0.2;1,2,3", {}, "row 2: expected 4 features .*, got 3"),
        ("feature1,feature2,feature3,feature4", {}, "'sepal_length' must be a number"),
        ('{"sepal_length": 5.1}', {}, "missing: sepal_width, petal_length, petal_width"),
        ('[{"sepal_length": 1, "x": 2}]', {}, "unknown: x"),
        ("[1, 2", {}, "not valid JSON"),
        ("[]", {}, "non-empty"),
        ("   ", {}, "empty"),
        ("5.1,3.5,1.4,0.2", {"probability": "yes"}, "'probability' must be true or false"),
    ],
)
def test_bad_input_fails_clearly(
    runtime: SklearnRuntime,
    iris_model: Path,
    input_data: str,
    parameters: dict[str, Any],
    expected: str,
) -> None:
    with pytest.raises(errors.JobFailure, match=expected):
        runtime.predict(runtime.load(iris_model), input_data, parameters, [])


def test_probability_on_a_regression_model_fails(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    runtime.train("random_forest", data / "regression.csv", {"n_estimators": 5}, _ctx(tmp_path))
    model = runtime.load(tmp_path / "model")
    with pytest.raises(errors.JobFailure, match="only available for classification"):
        runtime.predict(model, "59,2,32.1,101,157,93.2,38,4,4.8598,87", {"probability": True}, [])


# ---------------------------------------------------------------------------- safe loading


class _Payload:
    """Unpickling this creates the marker file: code runs on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _model_dir_with(iris_model: Path, tmp_path: Path) -> Path:
    """A copy of a good model directory whose model.skops the caller replaces."""
    target = tmp_path / "evil"
    shutil.copytree(iris_model, target)
    return target


def test_a_pickle_payload_is_refused_without_running_it(
    runtime: SklearnRuntime, iris_model: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)  # proof the payload is live: pickle runs it
    assert marker.exists()
    marker.unlink()

    model_dir = _model_dir_with(iris_model, tmp_path)
    (model_dir / "model.skops").write_bytes(payload)
    with pytest.raises(errors.JobFailure, match="not a valid skops file"):
        runtime.load(model_dir)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "refused"),
    [
        (FunctionTransformer(func=os.system), "system"),
        (FunctionTransformer(func=np.load), "numpy.load"),  # a function, even from numpy
        (_Payload(Path("x")), "_Payload"),
    ],
)
def test_a_skops_file_with_untrusted_types_is_refused(
    runtime: SklearnRuntime, iris_model: Path, tmp_path: Path, obj: Any, refused: str
) -> None:
    model_dir = _model_dir_with(iris_model, tmp_path)
    sio.dump(obj, model_dir / "model.skops")
    with pytest.raises(errors.JobFailure, match="untrusted types: .*" + refused):
        runtime.load(model_dir)


def test_missing_or_foreign_model_files_fail(
    runtime: SklearnRuntime, iris_model: Path, tmp_path: Path
) -> None:
    model_dir = _model_dir_with(iris_model, tmp_path)
    (model_dir / "model.skops").unlink()
    with pytest.raises(errors.JobFailure, match="missing"):
        runtime.load(model_dir)
    (model_dir / "meta.json").write_text('{"task": "oops"}')
    with pytest.raises(errors.JobFailure, match="not from the sklearn runtime"):
        runtime.load(model_dir)


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("sklearn.ensemble._forest.RandomForestClassifier", True),
        ("sklearn.tree._tree.Tree", True),
        ("numpy.dtype", True),
        ("builtins.dict", True),
        ("builtins.eval", False),
        ("posix.system", False),
        ("os.system", False),
        ("sklearn.utils.validation.check_array", False),
        ("sklearn.nowhere.Thing", False),
        ("sklearnx.Evil", False),
        ("tests.unit.test_sklearn_runtime._Payload", False),
    ],
)
def test_allow_list(name: str, trusted: bool) -> None:
    assert is_trusted_type(name) is trusted


def test_one_text_feature_takes_a_line_per_row(
    runtime: SklearnRuntime, data: Path, tmp_path: Path
) -> None:
    runtime.train("svm", data / "training.csv", {}, _ctx(tmp_path))
    model = runtime.load(tmp_path / "model")
    out = runtime.predict(
        model, "Great, really wonderful; I love it.\nAwful, broken, useless.", {}, []
    )
    assert out["predictions"] == ["positive", "negative"]


def test_svm_with_a_one_example_class_trains_without_probabilities(
    runtime: SklearnRuntime, tmp_path: Path
) -> None:
    lines = ["a,b,label"] + [f"{i},{i % 2},{'x' if i < 10 else 'y'}" for i in range(20)]
    lines.append("100,1,z")  # a class too rare to calibrate on held-out folds
    runtime.train("svm", _csv(tmp_path, "\n".join(lines)), {"test_size": 0.25}, _ctx(tmp_path))
    model = runtime.load(tmp_path / "model")
    assert runtime.predict(model, "1,1", {}, [])["predictions"][0] in ("x", "y", "z")
    with pytest.raises(errors.JobFailure, match="gives no probabilities"):
        runtime.predict(model, "1,1", {"probability": True}, [])
