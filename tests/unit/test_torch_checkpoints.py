"""Fine-tuning from a Hugging Face Hub id, offline: a tiny BERT and a tiny GPT-2 are built with
transformers and placed in a hub cache layout under a temporary HF_HOME, with HF_HUB_OFFLINE=1.
The job starts from those weights (its first step's loss is the checkpoint's loss on that batch),
keeps the checkpoint's tokenizer for inference, and a missing id fails naming what is missing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the unit tier runs where only scikit-learn is installed

import torch
import torch.nn.functional as F

from aijobs import errors
from aijobs.runtimes.torch import checkpoints, lm, text_data
from aijobs.runtimes.torch.runtime import TorchRuntime
from tests.runtime_support import ctx_for

pytestmark = pytest.mark.torch

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REVIEWS = [("a wonderful warm film", "positive"), ("dull and far too long", "negative")] * 6
STORY = " ".join(
    f"The {animal} walked to the {place} and the {animal} saw a {thing} there."
    for animal in ("fox", "cat", "owl", "dog")
    for place in ("river", "hill", "town")
    for thing in ("boat", "tree", "light")
)
# The checkpoint's weights, and neither a fresh model nor a fresh head, give this first loss.
FIRST_STEP = {"epochs": 1, "batch_size": 512, "validation_split": 0.0, "mixed_precision": False}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in a temporary HF_HOME, with the worker offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf" / "hub"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    rows = "\n".join(f"{text},{label}" for text, label in REVIEWS)
    (root / "reviews.csv").write_text(f"text,label\n{rows}\n")
    (root / "story.txt").write_text(STORY)
    return root


def snapshot(hub: Path, repo: str) -> Path:
    """The folder of `repo`'s main revision, as huggingface_hub lays out its cache."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    path = folder / "snapshots" / COMMIT
    path.mkdir(parents=True)
    return path


def tiny_bert(path: Path) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    tok = text_data.train_tokenizer([t for t, _ in REVIEWS], 200, True, 64)
    tok.save(str(path / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tok.token_to_id("[PAD]"),
    )  # fmt: skip
    config.num_labels = 2
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # a head sure of one class: far from a fresh model's loss of ln 2
        model.classifier.bias.copy_(torch.tensor([3.0, -3.0]))
    model.save_pretrained(path)
    model.train(False)
    return model, tok


def tiny_gpt2(path: Path) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = lm.train_tokenizer([STORY], 300)
    tok.save(str(path / "tokenizer.json"))
    eos = tok.token_to_id(lm.EOS)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=32, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # sharp embeddings: far from a fresh model's ln(vocab)
        model.transformer.wte.weight.mul_(30.0)
    model.save_pretrained(path)
    model.train(False)
    return model, tok


def first_loss(ctx: Any) -> float:
    (metrics, epoch), *_ = ctx.epoch_reports()
    assert epoch == 1
    return float(metrics["train_loss"])


def test_bert_fine_tunes_from_a_hub_id_with_its_own_weights_and_tokenizer(
    hub: Path, data: Path, tmp_path: Path
) -> None:
    model, tok = tiny_bert(snapshot(hub, "tiny-org/tiny-bert"))
    classes = sorted({label for _, label in REVIEWS})
    tok.enable_truncation(64)
    inputs = text_data.pad_batch([e.ids for e in tok.encode_batch([t for t, _ in REVIEWS])], 0)
    targets = torch.tensor([classes.index(label) for _, label in REVIEWS])
    with torch.no_grad():
        expected = float(F.cross_entropy(model(**inputs).logits, targets))
    assert abs(expected - math.log(2)) > 0.5  # so only these weights can give it

    ctx = ctx_for(tmp_path / "job", data)
    hp = {**FIRST_STEP, "pretrained_model": "tiny-org/tiny-bert", "max_length": 512}
    result = TorchRuntime().train("bert", data / "reviews.csv", hp, ctx)

    assert first_loss(ctx) == pytest.approx(expected, abs=1e-4)
    assert result.info["pretrained_from"] == "tiny-org/tiny-bert"
    assert result.info["pretrained_revision"] == COMMIT
    assert result.info["max_length"] == 64  # the encoder's own bound, not the 512 asked for
    assert any("over the pretrained model's 64" in note for note in result.info["notes"])
    saved = json.loads((ctx.model_dir / "tokenizer.json").read_text())
    assert saved["model"]["vocab"] == json.loads(tok.to_str())["model"]["vocab"]
    answer = TorchRuntime().predict(
        TorchRuntime().load(ctx.model_dir), "a wonderful warm film", {}, []
    )
    assert answer["label"] in classes


def test_gpt_fine_tunes_from_a_hub_id_at_a_revision(hub: Path, data: Path, tmp_path: Path) -> None:
    model, tok = tiny_gpt2(snapshot(hub, "tiny-gpt2"))
    stream = lm.token_stream(tok, [STORY], tok.token_to_id(lm.EOS))
    size = lm.block_size(len(stream), 32)
    blocks = torch.tensor(stream[: len(stream) // size * size]).view(-1, size)
    with torch.no_grad():
        logits = model(input_ids=blocks).logits
    vocab = logits.shape[-1]
    expected = float(F.cross_entropy(logits[:, :-1].reshape(-1, vocab), blocks[:, 1:].reshape(-1)))
    assert abs(expected - math.log(vocab)) > 1.0

    ctx = ctx_for(tmp_path / "job", data)
    hp = {**FIRST_STEP, "pretrained_model": f"tiny-gpt2@{COMMIT}", "max_length": 32}
    result = TorchRuntime().train("gpt", data / "story.txt", hp, ctx)

    assert first_loss(ctx) == pytest.approx(expected, abs=1e-4)
    assert result.info["pretrained_revision"] == COMMIT
    assert result.info["context_length"] == 64
    continued = TorchRuntime().predict(
        TorchRuntime().load(ctx.model_dir), "The fox", {"max_length": 5, "seed": 1}, []
    )
    assert continued["text"].startswith("The fox")


def test_a_checkpoint_missing_from_the_cache_fails_naming_it(
    hub: Path, data: Path, tmp_path: Path
) -> None:
    hp = {"epochs": 1, "pretrained_model": "tiny-org/not-cached"}
    ctx = ctx_for(tmp_path / "job", data)
    with pytest.raises(errors.JobFailure) as failure:
        TorchRuntime().train("bert", data / "reviews.csv", hp, ctx)
    message = failure.value.detail
    assert "'tiny-org/not-cached' is not in the Hugging Face cache" in message
    assert str(hub) in message
    assert "HF_HUB_OFFLINE=1" in message


def test_pickle_only_checkpoints_are_refused(hub: Path, data: Path, tmp_path: Path) -> None:
    path = snapshot(hub, "tiny-org/pickled")
    (path / "config.json").write_text("{}")
    (path / "pytorch_model.bin").write_bytes(b"pickle")
    hp = {"epochs": 1, "pretrained_model": "tiny-org/pickled"}
    with pytest.raises(errors.JobFailure, match=r"no \.safetensors weights .*pytorch_model\.bin"):
        TorchRuntime().train("bert", data / "reviews.csv", hp, ctx_for(tmp_path / "job", data))


@pytest.mark.parametrize(
    ("allow", "offline", "allowed"),
    [("true", None, True), ("false", None, False), ("true", "1", False), (None, None, True)],
)
def test_downloads_follow_the_setting_and_hf_hub_offline(
    monkeypatch: pytest.MonkeyPatch, allow: str | None, offline: str | None, allowed: bool
) -> None:
    for name, value in (("AIJOBS_ALLOW_DOWNLOADS", allow), ("HF_HUB_OFFLINE", offline)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert checkpoints.downloads_allowed() is allowed
