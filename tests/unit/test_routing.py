from __future__ import annotations

import pytest

from aijobs import errors, routing

TABLE = [
    (("bert", "transformer", "gpt"), "pytorch-2.1-cpu", "pytorch-2.1-gpu"),
    (("resnet", "vgg", "alexnet"), "pytorch-2.0-cpu", "pytorch-2.0-gpu"),
    (("inception", "mobilenet", "efficientnet"), "tensorflow", "tensorflow"),
    (("random_forest", "svm", "logistic_regression"), "sklearn", "sklearn"),
]


@pytest.mark.parametrize(("models", "cpu", "gpu"), TABLE)
def test_spec_routing_table(models: tuple[str, ...], cpu: str, gpu: str) -> None:
    for model in models:
        assert routing.resolve(model, False) == cpu
        assert routing.resolve(model, True) == gpu


def test_default_is_pytorch_21() -> None:
    assert routing.resolve("my_custom_model") == "pytorch-2.1-cpu"
    assert routing.resolve("my_custom_model", True) == "pytorch-2.1-gpu"


@pytest.mark.parametrize(
    ("model", "gpu", "override", "queue"),
    [
        ("bert", False, "pytorch-2.1", "pytorch-2.1-cpu"),
        ("bert", True, "pytorch-2.1", "pytorch-2.1-gpu"),
        ("resnet", False, "pytorch-2.0-gpu", "pytorch-2.0-gpu"),
        ("transformer", False, "pytorch-2.1-gpu", "pytorch-2.1-gpu"),
        ("inception", True, "tensorflow", "tensorflow"),
        ("random_forest", False, "sklearn", "sklearn"),
        ("resnet", False, "pytorch-2.1", "pytorch-2.1-cpu"),
        ("my_sklearn_thing", False, "sklearn", "sklearn"),
        ("bert", False, " PyTorch-2.1-CPU ", "pytorch-2.1-cpu"),
    ],
)
def test_override_wins(model: str, gpu: bool, override: str, queue: str) -> None:
    assert routing.resolve(model, gpu, override) == queue


def test_unknown_override_lists_valid_ones() -> None:
    with pytest.raises(errors.UnknownFramework) as exc:
        routing.resolve("bert", False, "jax")
    assert "pytorch-2.1" in exc.value.detail
    assert "sklearn" in exc.value.detail


def test_override_that_cannot_run_the_model() -> None:
    with pytest.raises(errors.IncompatibleFramework):
        routing.resolve("bert", False, "sklearn")
    with pytest.raises(errors.IncompatibleFramework):
        routing.resolve("random_forest", False, "tensorflow")
