"""`transformer` / `gpt`: a small GPT-2-style model learns the demo prose (perplexity far below
the untrained model's), continues prompts as asked, and fails clearly on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the unit tier runs where only scikit-learn is installed

import torch

from aijobs import errors
from aijobs.runtimes.base import TrainResult
from aijobs.runtimes.torch.lm import block_size, sample_next
from aijobs.runtimes.torch.runtime import TorchRuntime
from tests.runtime_support import FakeContext, ctx_for

pytestmark = pytest.mark.torch

SMALL = {
    "epochs": 5,
    "batch_size": 4,
    "learning_rate": 0.002,
    "max_length": 64,
    "hidden_size": 64,
}


@pytest.fixture(scope="module")
def trained(
    data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, FakeContext]:
    ctx = ctx_for(tmp_path_factory.mktemp("gpt"), data)
    result = TorchRuntime().train("gpt", data / "text_generation", dict(SMALL), ctx)
    return result, ctx


@pytest.fixture(scope="module")
def model(trained: tuple[TrainResult, FakeContext]) -> Any:
    return TorchRuntime().load(trained[1].model_dir)


def generate(model: Any, prompt: str, **parameters: Any) -> dict[str, Any]:
    return TorchRuntime().predict(model, prompt, parameters, [])


def test_learns_the_prose(trained: tuple[TrainResult, FakeContext]) -> None:
    result, ctx = trained
    vocab = result.info["vocab_size"]
    history = [m for m, _ in ctx.epoch_reports()]
    assert len(history) == 5
    assert all(
        {"train_loss", "val_loss", "perplexity", "train_perplexity"} <= set(m) for m in history
    )
    # an untrained model is about as unsure as the vocabulary is large
    assert result.metrics["perplexity"] < vocab / 20, (result.metrics, vocab)
    assert result.metrics["perplexity"] < history[0]["perplexity"] / 2
    assert result.metrics["tokens_per_second"] > 0
    info = result.info
    assert info["architecture"] == "gpt2"
    assert info["context_length"] == 64
    assert info["block_size"] == 64
    assert info["text_files"] == 4
    assert info["tokens"] > 5000
    assert info["device"] == "cpu"


def test_saved_files(trained: tuple[TrainResult, FakeContext]) -> None:
    model_dir = trained[1].model_dir
    assert {p.name for p in model_dir.iterdir()} == {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "aijobs.json",
    }
    config = json.loads((model_dir / "config.json").read_text())
    assert config["n_positions"] == 64
    assert config["n_embd"] == 64
    assert config["n_layer"] == 2


def test_continues_a_prompt_reproducibly_with_a_seed(model: Any) -> None:
    first = generate(model, "The model", seed=3, max_length=20, temperature=0.8)
    again = generate(model, "The model", seed=3, max_length=20, temperature=0.8)
    assert first == again
    assert first["text"] == "The model" + first["generated_text"]
    assert 0 < first["new_tokens"] <= 20
    assert first["prompt_tokens"] == 2
    assert first["finish_reason"] in ("length", "eos")
    words = first["generated_text"].split()
    known = {"the", "a", "learns", "waits", "reads", "builds", "measures", "compares", "and"}
    assert any(w.lower().strip(".") in known for w in words), first  # it speaks the prose


def test_temperature_zero_is_greedy_and_equals_top_k_one(model: Any) -> None:
    greedy = generate(model, "Every worker", temperature=0, max_length=15)
    assert greedy == generate(model, "Every worker", temperature=0, max_length=15)
    assert (
        greedy["generated_text"]
        == generate(model, "Every worker", top_k=1, max_length=15, seed=9)["generated_text"]
    )


def test_an_empty_prompt_starts_a_new_text(model: Any) -> None:
    out = generate(model, "", seed=1, max_length=10)
    assert out["prompt_tokens"] == 0
    assert out["new_tokens"] > 0


def test_generation_stops_at_the_context(model: Any) -> None:
    prompt = " ".join(["the model learns"] * 18)  # about 54 tokens of a 64-token context
    out = generate(model, prompt, temperature=0, max_length=500)
    assert out["finish_reason"] in ("context", "eos")
    assert out["prompt_tokens"] + out["new_tokens"] <= 64
    if out["finish_reason"] == "context":
        assert "context of 64 tokens" in out["notes"][0]


def test_a_prompt_longer_than_the_context_fails_clearly(model: Any) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        generate(model, "the queue waits for the next batch " * 30)
    assert "this model's context is 64 tokens" in caught.value.detail
    assert "shorten the prompt" in caught.value.detail


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"temperature": "warm"}, "'temperature' must be a number"),
        ({"temperature": -1}, "'temperature' must be a number in [0, 100]"),
        ({"max_length": "50"}, "'max_length' must be an integer"),
        ({"max_length": 0}, "'max_length' must be an integer between 1 and"),
        ({"top_p": 0}, "'top_p' must be a number in (0, 1]"),
        ({"top_k": 2.5}, "'top_k' must be an integer"),
        ({"seed": "x"}, "'seed' must be an integer"),
        ({"confidence_threshold": 0.5}, "unknown parameter for gpt: confidence_threshold"),
    ],
)
def test_bad_parameters_fail_clearly(model: Any, parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        generate(model, "The model", **parameters)
    assert message in caught.value.detail


def test_top_p_keeps_the_smallest_likely_set() -> None:
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]])
    params = {"temperature": 1.0, "top_k": 0, "top_p": 0.5}
    picks = {int(sample_next(logits, params, torch.Generator().manual_seed(i))) for i in range(30)}
    assert picks == {0}  # the first token alone holds over half of the mass
    params["top_p"] = 0.95
    picks = {int(sample_next(logits, params, torch.Generator().manual_seed(i))) for i in range(60)}
    assert picks <= {0, 1, 2}
    assert {0, 1} <= picks


def test_a_single_text_file_trains_too(data: Path, tmp_path: Path) -> None:
    hp = {**SMALL, "epochs": 1, "hidden_size": 32, "num_layers": 1}
    result = TorchRuntime().train(
        "transformer", data / "text_generation" / "chapter_1.txt", hp, ctx_for(tmp_path, data)
    )
    assert result.info["text_files"] == 1
    assert result.metrics["perplexity"] > 0


def test_block_size_shrinks_for_a_small_corpus() -> None:
    assert block_size(100_000, 128) == 128
    assert block_size(1_000, 128) == 62
    assert block_size(50, 128) == 8


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "holds no text files"),
        ({"notes.csv": "a,b\n"}, "holds no text files"),
        ({"a.txt": "  \n", "b.txt": ""}, "the training text is empty"),
        ({"a.txt": "tiny text"}, "too little text to train on"),
        ({"a.txt": b"\xff\xfe\x00bad"}, "is not UTF-8"),
    ],
)
def test_bad_text_data_fails_clearly(
    tmp_path: Path, data: Path, files: dict[str, str | bytes], message: str
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (corpus / name).write_bytes(content)
        else:
            (corpus / name).write_text(content)
    with pytest.raises(errors.JobFailure) as caught:
        TorchRuntime().train("gpt", corpus, {"epochs": 1}, ctx_for(tmp_path / "run", data))
    assert message in caught.value.detail
