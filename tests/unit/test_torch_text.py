"""`bert`: a small encoder learns the demo sentiment data, labels text, fails clearly on bad
input, and fine-tunes from a local pretrained directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the unit tier runs where only scikit-learn is installed

from aijobs import errors
from aijobs.runtimes.base import TrainResult
from aijobs.runtimes.torch.runtime import TorchRuntime
from aijobs.runtimes.torch.text import parse_texts
from aijobs.runtimes.torch.text_data import pad_batch
from tests.runtime_support import FakeContext, ctx_for

pytestmark = pytest.mark.torch

SMALL = {"epochs": 3, "hidden_size": 64, "num_layers": 1, "max_length": 32, "batch_size": 8}


@pytest.fixture(scope="module")
def trained(
    data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, FakeContext]:
    ctx = ctx_for(tmp_path_factory.mktemp("bert"), data)
    result = TorchRuntime().train("bert", data / "sentiment_analysis.csv", dict(SMALL), ctx)
    return result, ctx


@pytest.fixture(scope="module")
def model(trained: tuple[TrainResult, FakeContext]) -> Any:
    return TorchRuntime().load(trained[1].model_dir)


def predict(model: Any, text: str, **parameters: Any) -> dict[str, Any]:
    return TorchRuntime().predict(model, text, parameters, [])


# ---------------------------------------------------------------------------------- training


def test_learns_sentiment_and_reports_every_epoch(trained: tuple[TrainResult, FakeContext]) -> None:
    result, ctx = trained
    assert result.metrics["accuracy"] > 0.8, result.metrics  # chance is 0.5
    assert result.metrics["f1"] > 0.8
    assert result.metrics["n_train"] == 320
    assert result.metrics["n_validation"] == 80
    epochs = ctx.epoch_reports()
    assert [e for _, e in epochs] == [1, 2, 3]
    for metrics, _ in epochs:
        assert {"train_loss", "val_loss", "accuracy", "f1", "samples_per_second"} <= set(metrics)
    assert epochs[-1][0]["val_loss"] < epochs[0][0]["val_loss"]
    fractions = [f for f, _, _ in ctx.reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] < 1.0
    info = result.info
    assert info["device"] == "cpu"
    assert info["parameters"] > 10_000
    assert info["classes"] == ["negative", "positive"]
    assert info["text_column"] == "text"
    assert info["epochs_trained"] == 3
    assert "resumed_from_epoch" not in info


def test_saves_a_hugging_face_directory(trained: tuple[TrainResult, FakeContext]) -> None:
    model_dir = trained[1].model_dir
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "aijobs.json"} <= names
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["num_hidden_layers"] == 1
    assert config["hidden_size"] == 64
    meta = json.loads((model_dir / "aijobs.json").read_text())
    assert meta["family"] == "text_classifier"
    assert meta["max_length"] == 32


def test_same_seed_same_model(data: Path, tmp_path: Path) -> None:
    hp = {**SMALL, "epochs": 1, "hidden_size": 32}
    runs = [
        TorchRuntime().train("bert", data / "training.csv", hp, ctx_for(tmp_path / str(i), data))
        for i in range(2)
    ]
    assert runs[0].metrics["val_loss"] == runs[1].metrics["val_loss"]
    other = TorchRuntime().train(
        "bert", data / "training.csv", {**hp, "seed": 7}, ctx_for(tmp_path / "7", data)
    )
    assert other.metrics["val_loss"] != runs[0].metrics["val_loss"]


def test_batches_are_padded_to_their_longest_text() -> None:
    batch = pad_batch([[2, 10, 11, 3], [2, 12, 3]], pad=0)
    assert batch["input_ids"].tolist() == [[2, 10, 11, 3], [2, 12, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


# --------------------------------------------------------------------------------- inference


def test_labels_the_spec_example(model: Any) -> None:
    out = predict(model, "This is a great product!", temperature=0.7, max_length=100)
    assert out["label"] == "positive"
    assert out["predictions"] == ["positive"]
    assert out["confidence"] > 0.5
    assert abs(sum(out["probabilities"][0].values()) - 1) < 1e-4


def test_one_text_per_line_or_a_json_list(model: Any) -> None:
    lines = predict(model, "What a wonderful movie!\nThe phone was broken and awful.\n")
    assert lines["predictions"] == ["positive", "negative"]
    assert lines["n_rows"] == 2
    assert "label" not in lines
    listed = predict(
        model, json.dumps(["I adore this hotel, it is lovely.", "This app is useless."])
    )
    assert listed["predictions"] == ["positive", "negative"]


def test_max_length_truncates_and_says_so(model: Any) -> None:
    text = "This movie is great and lovely. " + "The camera was awful and broken. " * 20
    assert "notes" not in predict(model, "This is a great product!")
    cut = predict(model, text, max_length=8)
    assert cut["notes"] == ["1 texts were truncated to 8 tokens"]
    assert cut["label"] == "positive"  # only the start was read
    assert predict(model, text)["notes"] == ["1 texts were truncated to 32 tokens"]


def test_temperature_softens_and_top_k_trims(model: Any) -> None:
    sharp = predict(model, "This is a great product!", temperature=0.1)["confidence"]
    soft = predict(model, "This is a great product!", temperature=10.0)["confidence"]
    assert sharp > soft > 0.5
    assert list(predict(model, "awful", top_k=1)["probabilities"][0]) == ["negative"]


@pytest.mark.parametrize(
    ("text", "parameters", "message"),
    [
        ("", {}, "input_data is empty"),
        ("   \n  ", {}, "input_data is empty"),
        ("good", {"temperature": "hot"}, "'temperature' must be a number"),
        ("good", {"temperature": 0}, "'temperature' must be a number in (0, 100]"),
        ("good", {"max_length": 2.5}, "'max_length' must be an integer"),
        ("good", {"top_p": 0.9}, "unknown parameter for bert: top_p"),
        ('["ok", 3]', {}, "list of non-empty strings"),
    ],
)
def test_bad_inference_input_fails_clearly(
    model: Any, text: str, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        predict(model, text, **parameters)
    assert message in caught.value.detail


def test_parse_texts() -> None:
    assert parse_texts("a\n\nb ") == ["a", "b"]
    assert parse_texts("[not json") == ["[not json"]


# -------------------------------------------------------------------------------- bad input


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("csv_text", "hp", "message"),
    [
        ("body,label\nnice,pos\nbad,neg\nok,pos\nmeh,neg\n", {}, "has no text column"),
        (
            "text,label\nnice,pos\nbad,neg\nok,pos\nmeh,neg\n",
            {"text_column": "review"},
            "text column 'review' (hyperparameter 'text_column') is not in the CSV; "
            "its columns are: text, label",
        ),
        ("text,stars\nnice,5\nbad,1\nok,4\nmeh,2\n", {}, "has no label column"),
        ("text,label\nnice,pos\nbad,pos\nok,pos\nmeh,pos\n", {}, "has a single class ('pos')"),
        ("text,label\nnice,pos\n", {}, "has 1 usable rows"),
        ("", {}, "is empty"),
        ("text,label\nnice,pos\nbad,neg\nok,pos\nmeh,neg\n", {"num_classes": 1}, "num_classes"),
        ("text,label\na,x\nb,y\nc,z\nd,x\ne,y\nf,z\n", {"num_classes": 2}, "data has 3 classes"),
        ("text,label\nnice,pos\nbad,neg\nok,pos\nmeh,neg\n", {"epochs": "2"}, "'epochs'"),
        ("text,label\nnice,pos\nbad,neg\nok,pos\nmeh,neg\n", {"num_heads": 3}, "divide"),
    ],
)
def test_bad_training_input_fails_clearly(
    tmp_path: Path, data: Path, csv_text: str, hp: dict[str, Any], message: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", csv_text)
    with pytest.raises(errors.JobFailure) as caught:
        TorchRuntime().train("bert", path, hp, ctx_for(tmp_path / "run", data))
    assert message in caught.value.detail


def test_a_directory_is_not_a_csv(tmp_path: Path, data: Path) -> None:
    with pytest.raises(errors.JobFailure, match="is a directory; bert needs a CSV"):
        TorchRuntime().train("bert", data / "cifar10", {}, ctx_for(tmp_path, data))


def test_named_columns_and_a_larger_num_classes(tmp_path: Path, data: Path) -> None:
    rows = ["review,stars"] + [
        f"{'great lovely' if i % 2 else 'awful broken'} thing {i},{5 if i % 2 else 1}"
        for i in range(40)
    ]
    path = write_csv(tmp_path / "reviews.csv", "\n".join(rows) + "\n")
    hp = {**SMALL, "epochs": 1, "text_column": "review", "label_column": "stars", "num_classes": 5}
    result = TorchRuntime().train("bert", path, hp, ctx_for(tmp_path / "run", data))
    assert result.info["classes"] == ["1", "5"]
    assert result.info["num_classes"] == 2
    assert any(
        "num_classes 5 was given but the data has 2 classes" in n for n in result.info["notes"]
    )


# ------------------------------------------------------------------------------- pretrained


def test_fine_tunes_from_a_local_pretrained_directory(
    trained: tuple[TrainResult, FakeContext], data: Path, tmp_path: Path
) -> None:
    pretrained = data / "pretrained_bert"
    if not pretrained.exists():
        shutil.copytree(trained[1].model_dir, pretrained)
    hp = {"epochs": 1, "pretrained_model": "pretrained_bert", "hidden_size": 768}
    result = TorchRuntime().train("bert", data / "training.csv", hp, ctx_for(tmp_path / "ft", data))
    assert result.info["architecture"] == "bert"
    assert result.info["pretrained_from"] == "pretrained_bert"
    assert result.metrics["accuracy"] > 0.8  # starts from a model that already knows sentiment
    assert any("taken from the pretrained model" in n for n in result.info["notes"])
    tuned = TorchRuntime().load(tmp_path / "ft" / "model")
    assert predict(tuned, "This is a great product!")["label"] == "positive"


def test_pretrained_pickle_weights_are_refused(data: Path, tmp_path: Path) -> None:
    directory = data / "pickled_bert"
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text('{"model_type": "bert"}')
    (directory / "pytorch_model.bin").write_bytes(b"not loaded")
    hp = {"epochs": 1, "pretrained_model": "/data/pickled_bert"}
    with pytest.raises(errors.JobFailure) as caught:
        TorchRuntime().train("bert", data / "training.csv", hp, ctx_for(tmp_path, data))
    assert "no .safetensors weights" in caught.value.detail
    assert "pytorch_model.bin" in caught.value.detail


def test_pretrained_outside_the_data_roots_is_refused(data: Path, tmp_path: Path) -> None:
    hp = {"epochs": 1, "pretrained_model": "/etc"}
    with pytest.raises(errors.JobFailure, match=r"pretrained_model: .*outside the data roots"):
        TorchRuntime().train("bert", data / "training.csv", hp, ctx_for(tmp_path, data))
