"""The TensorFlow runtime: `inception`, `mobilenet` and `efficientnet` learn the demo images in two
epochs, classify an image path inside the data roots, load only safely, and fail clearly on bad
folders, images and hyperparameters.

Each Keras model's first training step costs 30-70 s of graph building on two cores, so every
model type trains once (module-scoped) and the checks share it; bad input fails before any model
is built.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorflow")  # the unit tier runs where only scikit-learn is installed

import keras
import numpy as np

from aijobs import errors
from aijobs.runtimes.base import Runtime, TrainResult, discover
from aijobs.runtimes.tensorflow import models as tf_models
from aijobs.runtimes.tensorflow import params as tf_params
from aijobs.runtimes.tensorflow.runtime import TensorFlowRuntime
from aijobs.settings import Settings, parse_queue_python
from tests.runtime_support import ctx_for

pytestmark = [
    pytest.mark.tensorflow,
    # TensorFlow's tensors predate NumPy 2's copy keyword; Keras converts its logs every batch.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning"),
    # Loading weights into the wrong network (a test below) warns per layer before it fails.
    pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning"),
]
# Two epochs at batch 8 on the tinted CIFAR-10 demo (12 images a class, 20 held out): 26 steps, at
# a constant rate (the default cosine schedule would spend half of so few steps near zero). One
# epoch left mobilenet at 0.2 on one CPU and above it on another; two reach 0.4 on seeds 1 and 2.
TWO_EPOCHS = {"epochs": 2, "batch_size": 8, "seed": 1, "lr_schedule": "constant"}
IMAGE = "/data/cifar10/ship/ship_003.png"
Trained = tuple[TrainResult, Path, list[tuple[float, Any, Any]]]


def train(
    model_type: str, data_path: Path, hp: dict[str, Any], tmp: Path, data: Path, **ctx: Any
) -> TrainResult:
    return TensorFlowRuntime().train(model_type, data_path, hp, ctx_for(tmp, data, **ctx))


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """Each model type trained once for two epochs, lazily (only the tests that need it pay)."""
    done: dict[str, Trained] = {}

    def get(model_type: str) -> Trained:
        if model_type not in done:
            tmp = tmp_path_factory.mktemp(model_type)
            ctx = ctx_for(tmp, data)
            hp = {**TWO_EPOCHS, "num_classes": 10, "dropout_rate": 0.2, "learning_rate": 0.001}
            result = TensorFlowRuntime().train(model_type, data / "cifar10", hp, ctx)
            done[model_type] = (result, tmp / "model", ctx.reports)
        return done[model_type]

    return get


# ---------------------------------------------------------------------------------- training


def test_the_runtime_is_a_registered_plugin() -> None:
    runtime = discover()["tensorflow"]
    assert isinstance(runtime, Runtime)
    assert runtime.missing() is None
    assert runtime.model_types == {"inception", "mobilenet", "efficientnet"}
    assert runtime.framework_version() == "2.21.0"


@pytest.mark.parametrize(
    ("model_type", "architecture", "size"),
    [("inception", "InceptionV3", 75), ("mobilenet", "MobileNetV2", 32),
     ("efficientnet", "EfficientNetB0", 32)],
)  # fmt: skip
def test_each_model_type_learns_in_two_epochs(
    trained: Callable[[str], Trained], model_type: str, architecture: str, size: int
) -> None:
    result, model_dir, reports = trained(model_type)
    assert result.metrics["accuracy"] > 0.2, result.metrics  # chance is 0.1 (10 classes)
    assert result.metrics["n_train"] == 100
    assert result.metrics["n_validation"] == 20
    assert {"val_loss", "f1", "train_loss", "samples_per_second"} <= set(result.metrics)
    info = result.info
    assert info["architecture"] == architecture
    assert info["image_size"] == size
    assert info["device"] == "cpu"
    assert info["num_classes"] == 10
    assert info["images"] == 120
    assert info["classes"][0] == "airplane"
    assert info["parameters"] > 1_000_000
    epochs = [(fraction, m) for fraction, m, epoch in reports if epoch is not None]
    assert len(epochs) == 2
    assert epochs[-1][0] == pytest.approx(0.95)
    assert {"train_loss", "train_accuracy", "accuracy", "val_loss", "epoch_time"} <= set(
        epochs[-1][1]
    )
    assert {p.name for p in model_dir.iterdir()} == {"model.keras", "aijobs.json"}


def test_defaults_are_ten_epochs_at_batch_16_with_a_cosine_or_constant_rate() -> None:
    from aijobs.runtimes.tensorflow.train import optimizer_for

    def rate_at(optimizer: keras.optimizers.Optimizer, step: int) -> float:
        optimizer.iterations.assign(step)
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    hp = tf_params.check("mobilenet", {})
    assert (hp["epochs"], hp["batch_size"], hp["lr_schedule"]) == (10, 16, "cosine")
    assert hp["learning_rate"] == 1e-3
    cosine = optimizer_for(hp, total_steps=80)
    assert rate_at(cosine, 0) == pytest.approx(1e-3)
    assert rate_at(cosine, 40) == pytest.approx(5e-4)
    assert rate_at(cosine, 80) == pytest.approx(0.0, abs=1e-9)
    constant = optimizer_for({**hp, "lr_schedule": "constant"}, total_steps=80)
    assert rate_at(constant, 0) == rate_at(constant, 80) == pytest.approx(1e-3)


# --------------------------------------------------------------------------------- inference


def test_predict_gives_the_top_k_classes_of_an_image(
    trained: Callable[[str], Trained], data: Path
) -> None:
    runtime = TensorFlowRuntime()
    model = runtime.load(trained("mobilenet")[1])
    out = runtime.predict(model, IMAGE, {"top_k": 3}, [data])
    ranked = out["top_k"][0]
    assert len(ranked) == 3
    assert out["n_rows"] == 1
    assert out["images"] == [IMAGE]
    assert out["label"] == ranked[0]["label"] == out["predictions"][0]
    assert out["confidence"] == ranked[0]["probability"]
    assert [r["probability"] for r in ranked] == sorted(
        (r["probability"] for r in ranked), reverse=True
    )
    two = runtime.predict(model, f"{IMAGE}\n/data/cifar10/cat/cat_001.png", {}, [data])
    assert two["n_rows"] == 2
    assert len(two["top_k"][0]) == 5
    sure = runtime.predict(model, IMAGE, {"confidence_threshold": 1.0}, [data])
    assert sure["top_k"] == [[]]
    assert sure["label"] is None
    for bad, message in [
        ("/etc/passwd", "outside the data roots"),
        ("/data/cifar10/none.png", "does not exist"),
        ("", "input_data is empty"),
    ]:
        with pytest.raises(errors.JobFailure, match=message):
            runtime.predict(model, bad, {}, [data])
    with pytest.raises(errors.JobFailure, match="unknown parameter for mobilenet: temperature"):
        runtime.predict(model, IMAGE, {"temperature": 0.7}, [data])


def test_a_model_file_with_code_in_it_is_refused(tmp_path: Path) -> None:
    """A Lambda layer carries Python bytecode: safe_mode refuses to deserialize it."""
    inputs = keras.Input((2,))
    crafted = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    crafted.save(tmp_path / "model.keras")
    meta = '{"runtime": "tensorflow", "architecture": {"image_size": 32}, "classes": ["a", "b"]}'
    (tmp_path / "aijobs.json").write_text(meta)
    with pytest.raises(errors.JobFailure, match="cannot be loaded safely"):
        TensorFlowRuntime().load(tmp_path)
    (tmp_path / "aijobs.json").write_text('{"runtime": "pytorch"}')
    with pytest.raises(errors.JobFailure, match="not from the tensorflow runtime"):
        TensorFlowRuntime().load(tmp_path)


# ------------------------------------------------------------------------------ architectures


@pytest.mark.parametrize(
    ("name", "alpha"), [("MobileNetV3Small", 0.5), ("MobileNetV3Large", 1.0), ("EfficientNetB1", 1)]
)
def test_other_architectures_build_at_their_smallest_input(name: str, alpha: float) -> None:
    arch = {"model_type": "x", "name": name, "image_size": 32, "num_classes": 3,
            "dropout_rate": 0.1, "alpha": alpha}  # fmt: skip
    model = tf_models.build(arch)
    out = model(np.zeros((2, 32, 32, 3), dtype=np.uint8), training=False)
    assert tuple(out.shape) == (2, 3)
    assert np.allclose(np.asarray(out).sum(axis=1), 1.0, atol=1e-5)


def test_pretrained_weights_come_from_a_local_file(tmp_path: Path) -> None:
    arch = {"model_type": "mobilenet", "name": "MobileNetV3Small", "image_size": 32,
            "num_classes": 2, "dropout_rate": 0.0, "alpha": 0.5}  # fmt: skip
    source = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.5, pooling="avg"
    )
    weights = tmp_path / "small.weights.h5"
    source.save_weights(weights)
    model = tf_models.build(arch, weights)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert np.array_equal(backbone.weights[0].numpy(), source.weights[0].numpy())
    other = {**arch, "name": "EfficientNetB0", "alpha": 1.0}
    with pytest.raises(errors.JobFailure, match="cannot be loaded into EfficientNetB0"):
        tf_models.build(other, weights)


# ----------------------------------------------------------------------------- bad input


def folder(tmp: Path, data: Path, per_class: dict[str, int]) -> Path:
    """A class folder per key under the data root, with that many demo images."""
    root = data / f"custom-{tmp.name}"
    for name, count in per_class.items():
        (root / name).mkdir(parents=True)
        for k in range(count):
            shutil.copy(data / "cifar10" / "ship" / f"ship_{k:03d}.png", root / name / f"{k}.png")
    return root


def test_too_few_images_fail_clearly(data: Path, tmp_path: Path) -> None:
    root = folder(tmp_path, data, {"cat": 3, "dog": 1, "bird": 0})
    with pytest.raises(errors.JobFailure, match=r"too few images.*'dog' \(1\)") as failure:
        train("mobilenet", root, {}, tmp_path, data)
    assert "'cat'" not in failure.value.detail
    single = folder(tmp_path / "one", data, {"cat": 3})
    with pytest.raises(errors.JobFailure, match="at least two class folders"):
        train("mobilenet", single, {}, tmp_path / "x", data)


def test_a_corrupt_image_fails_clearly(data: Path, tmp_path: Path) -> None:
    root = folder(tmp_path, data, {"cat": 3, "dog": 3})
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really an image")
    with pytest.raises(errors.JobFailure, match=r"image 'dog/broken.png' cannot be read"):
        train("inception", root, {}, tmp_path, data)


def test_num_classes_must_match_the_folders(data: Path, tmp_path: Path) -> None:
    with pytest.raises(
        errors.JobFailure,
        match=r"'num_classes' is 5, but the data has 10 classes \(airplane, automobile",
    ):
        train("efficientnet", data / "cifar10", {"num_classes": 5}, tmp_path, data)


@pytest.mark.parametrize(
    ("model_type", "hp", "messages"),
    [
        ("inception", {"epochs": 1, "learnin_rate": 0.1, "dropout": 0.2},
         ["unknown hyperparameters: dropout, learnin_rate", "accepted:", "dropout_rate"]),
        ("mobilenet", {"epochs": "ten", "batch_size": 2.5, "dropout_rate": 1.5},
         ["'epochs' must be an integer, got the string 'ten'",
          "'batch_size' must be an integer, got 2.5", "'dropout_rate' must be a number in [0, 1)"]),
        ("inception", {"image_size": 64},
         ["'image_size' must be at least 75 for inception"]),
        ("mobilenet", {"variant": "large"}, ["applies to mobilenet version 3 only"]),
        ("efficientnet", {"variant": "b9", "validation_split": True},
         ["'variant' must be one of 'b0'", "'validation_split' must be a number, got True"]),
        ("efficientnet", {"pretrained_weights": "/etc/hosts"},
         ["'pretrained_weights' '/etc/hosts' is outside the data roots"]),
    ],
)  # fmt: skip
def test_bad_hyperparameters_fail_naming_each_key(
    model_type: str, hp: dict[str, Any], messages: list[str], data: Path, tmp_path: Path
) -> None:
    with pytest.raises(errors.JobFailure) as failure:
        train(model_type, data / "cifar10", hp, tmp_path, data)
    for message in messages:
        assert message in failure.value.detail


def test_other_bad_requests(data: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.JobFailure, match="is not a directory"):
        train("mobilenet", data / "tabular_data.csv", {}, tmp_path / "a", data)
    with pytest.raises(errors.JobFailure, match="cannot train 'resnet'"):
        train("resnet", data / "cifar10", {}, tmp_path / "b", data)
    with pytest.raises(errors.JobFailure, match="requires a GPU, but TensorFlow sees no GPU"):
        train("mobilenet", data / "cifar10", {}, tmp_path / "c", data, device="cuda")


# ------------------------------------------------------------------ per-queue interpreters


def test_queue_python_names_an_interpreter_per_queue(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    parsed = parse_queue_python(f" tensorflow={python} , pytorch-2.1-gpu={python},")
    assert parsed == {"tensorflow": python, "pytorch-2.1-gpu": python}
    assert Settings(queue_python="").queue_pythons == {}
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    with pytest.raises(ValueError, match="unknown queue 'tensorfow'") as bad:
        parse_queue_python(
            f"tensorfow={python},sklearn={not_executable},pytorch=,"
            f"tensorflow={python},tensorflow={python}"
        )
    problems = str(bad.value)
    assert "unknown queue 'tensorfow'" in problems
    assert f"interpreter for 'sklearn', '{not_executable}', is not an executable file" in problems
    assert "'pytorch=' is not queue=/path/to/python" in problems
    assert "queue 'tensorflow' is given twice" in problems
