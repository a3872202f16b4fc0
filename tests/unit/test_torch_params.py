"""The PyTorch runtime's hyperparameters: the spec's examples pass as written, bad ones fail
the job with a message naming each bad key. No training here (and no torch import needed)."""

from __future__ import annotations

from typing import Any

import pytest

from aijobs import errors
from aijobs.runtimes import params
from aijobs.runtimes.torch import params as torch_params

SPEC_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("bert", {"epochs": 5, "learning_rate": 0.0001, "batch_size": 16, "max_length": 512}),
    ("resnet", {"epochs": 10, "learning_rate": 0.001, "batch_size": 32, "num_classes": 1000}),
    (
        "transformer",
        {
            "epochs": 3,
            "learning_rate": 0.0003,
            "batch_size": 8,
            "max_length": 1024,
            "num_layers": 12,
            "hidden_size": 768,
        },
    ),
]


def check(model_type: str, given: dict[str, Any]) -> dict[str, Any]:
    accepted, defaults = torch_params.spec_for(model_type)
    return params.validate(given, accepted, defaults)


@pytest.mark.parametrize(("model_type", "given"), SPEC_EXAMPLES)
def test_spec_examples_are_accepted_as_written(model_type: str, given: dict[str, Any]) -> None:
    resolved = check(model_type, given)
    for key, value in given.items():
        assert resolved[key] == value


@pytest.mark.parametrize("model_type", ["bert", "transformer", "gpt", "resnet", "vgg", "alexnet"])
def test_defaults_are_complete_and_small(model_type: str) -> None:
    hp = check(model_type, {})
    assert hp["epochs"] == (5 if model_type in ("bert", "resnet") else 3)
    assert hp["seed"] == 42
    assert hp["validation_split"] == 0.2
    assert hp["learning_rate"] > 0
    assert hp["batch_size"] >= 4
    assert hp["dropout"] is not None
    if model_type in ("bert", "transformer", "gpt"):
        assert hp["num_layers"] == 2
        assert hp["hidden_size"] == 128
        assert hp["max_length"] == 128
    else:
        assert hp["image_size"] == 32
        assert hp["width"] >= 8


def test_unknown_hyperparameters_are_named_with_the_accepted_ones() -> None:
    with pytest.raises(errors.JobFailure) as caught:
        check("bert", {"epochs": 1, "n_estimators": 10, "learing_rate": 0.1})
    message = caught.value.detail
    assert "unknown hyperparameters" in message
    assert "learing_rate" in message
    assert "n_estimators" in message
    assert "learning_rate" in message.split("accepted:")[1]


@pytest.mark.parametrize(
    ("given", "key", "expected"),
    [
        ({"epochs": "5"}, "epochs", "must be an integer, got the string '5'"),
        ({"epochs": 2.5}, "epochs", "must be an integer"),
        ({"epochs": True}, "epochs", "must be an integer, got True"),
        ({"epochs": 0}, "epochs", "between 1 and"),
        ({"learning_rate": "fast"}, "learning_rate", "must be a number"),
        ({"learning_rate": 0}, "learning_rate", "(0, 10]"),
        ({"batch_size": None}, "batch_size", None),  # null means the default: accepted
        ({"validation_split": 1.0}, "validation_split", "[0, 0.9]"),
        ({"dropout": 1}, "dropout", "[0, 1)"),
        ({"optimizer": "lbfgs"}, "optimizer", "one of 'adamw', 'adam', 'sgd'"),
        ({"text_column": 3}, "text_column", "must be a string"),
        ({"lowercase": "yes"}, "lowercase", "must be true or false"),
        ({"seed": -1}, "seed", "between 0 and"),
    ],
)
def test_wrong_types_and_ranges_name_the_key(
    given: dict[str, Any], key: str, expected: str | None
) -> None:
    if expected is None:
        assert check("bert", given)[key] == check("bert", {})[key]
        return
    with pytest.raises(errors.JobFailure) as caught:
        check("bert", given)
    assert f"'{key}'" in caught.value.detail
    assert expected in caught.value.detail


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(errors.JobFailure) as caught:
        check("resnet", {"epochs": "ten", "depth": 20, "max_length": 128})
    message = caught.value.detail
    assert "'epochs'" in message
    assert "'depth'" in message
    assert "max_length" in message
    assert "one of 18, 34, 50" in message


def test_model_specific_keys_belong_to_their_model() -> None:
    assert check("vgg", {"depth": 16})["depth"] == 16
    with pytest.raises(errors.JobFailure, match="depth"):
        check("alexnet", {"depth": 18})
    with pytest.raises(errors.JobFailure, match="image_size"):
        check("bert", {"image_size": 32})
    with pytest.raises(errors.JobFailure, match="text_column"):
        check("gpt", {"text_column": "text"})


def test_integers_are_accepted_for_float_hyperparameters() -> None:
    assert check("gpt", {"learning_rate": 1})["learning_rate"] == 1.0
    assert isinstance(check("gpt", {"weight_decay": 0})["weight_decay"], float)


def test_hyperparameters_must_be_an_object() -> None:
    with pytest.raises(errors.JobFailure, match="JSON object"):
        params.validate([("epochs", 1)], torch_params.COMMON)  # type: ignore[arg-type]


def test_attention_heads() -> None:
    assert torch_params.default_heads(128, None) == 2
    assert torch_params.default_heads(768, None) == 12
    assert torch_params.default_heads(32, None) == 1
    assert torch_params.default_heads(96, None) == 1
    assert torch_params.default_heads(256, 8) == 8
    with pytest.raises(errors.JobFailure, match="'num_heads' \\(3\\) must divide 'hidden_size'"):
        torch_params.default_heads(128, 3)


def test_unknown_model_type() -> None:
    with pytest.raises(errors.JobFailure, match="cannot train 'random_forest'"):
        torch_params.spec_for("random_forest")


def test_wider_transformers_default_to_a_lower_learning_rate() -> None:
    notes: list[str] = []
    spec = SPEC_EXAMPLES[2][1]
    wide = {k: v for k, v in spec.items() if k != "learning_rate"}
    hp = torch_params.default_learning_rate(wide, check("transformer", wide), notes)
    assert hp["learning_rate"] == pytest.approx(2e-3 * 128 / 768, rel=1e-2)
    assert notes == ["learning_rate defaulted to 0.000333 for hidden_size 768"]
    given = check("transformer", spec)
    assert torch_params.default_learning_rate(spec, given, [])["learning_rate"] == 0.0003
    small = check("gpt", {})
    assert torch_params.default_learning_rate({}, small, [])["learning_rate"] == 2e-3
