"""`bert`: a BERT-style encoder that classifies text, trained on a CSV of text and labels.

Built from its configuration (layers, hidden size, heads, max_length) with a WordPiece tokenizer
trained on the training rows, or fine-tuned from a checkpoint (``hyperparameters.pretrained_model``:
a Hugging Face Hub id or a directory inside the data roots; see `checkpoints`) with its own
tokenizer. Batches
are padded to their longest sequence, not to max_length.

Saved as a Hugging Face directory: config.json + model.safetensors + tokenizer.json, beside
aijobs.json (classes, lengths, hyperparameters).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aijobs import errors
from aijobs.runtimes import datasets, params
from aijobs.runtimes.base import TrainContext, TrainResult
from aijobs.runtimes.torch import checkpoints, common, text_data, training
from aijobs.runtimes.torch import params as torch_params
from aijobs.runtimes.torch.runtime import META_FILE

FAMILY = "text_classifier"
MIN_ROWS = 4
PREDICT_BATCH = 64
PREDICT_PARAMS: dict[str, params.Param] = {
    "temperature": params.param(float, 1.0, params.number(0, 100, low_open=True)),
    "max_length": params.param(int, None, params.integer(1, 1_000_000), nullable=True),
    "top_k": params.param(int, None, params.integer(1, 1_000_000), nullable=True),
}


# ------------------------------------------------------------------------------------- task


class TextClassification:
    kind = "classification"

    def __init__(
        self,
        model: torch.nn.Module,
        ids: list[list[int]],
        labels: list[int],
        split: tuple[list[int], list[int]],
        pad: int,
        num_classes: int,
        device: torch.device,
    ) -> None:
        self.model = model
        self.ids, self.labels = ids, torch.tensor(labels, dtype=torch.long)
        self.train_idx, self.val_idx = split
        self.n_train, self.n_validation = len(self.train_idx), len(self.val_idx)
        self.pad, self.num_classes, self.device = pad, num_classes, device

    def _batch(self, indices: list[int]) -> training.Batch:
        inputs = text_data.pad_batch([self.ids[i] for i in indices], self.pad)
        on_device = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        targets = self.labels[indices].to(self.device, non_blocking=True)
        return training.Batch(on_device, targets, len(indices))

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[training.Batch]:
        order = torch.randperm(self.n_train, generator=generator).tolist()
        for start in range(0, self.n_train, batch_size):
            yield self._batch([self.train_idx[i] for i in order[start : start + batch_size]])

    def validation_batches(self, batch_size: int) -> Iterator[training.Batch]:
        for start in range(0, self.n_validation, batch_size):
            yield self._batch(self.val_idx[start : start + batch_size])

    def logits(self, inputs: Any) -> torch.Tensor:
        out: torch.Tensor = self.model(**inputs).logits
        return out


# --------------------------------------------------------------------------------- training


def _scratch_model(hp: dict[str, Any], vocab_size: int, classes: list[str], pad: int) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    hidden = hp["hidden_size"]
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=hp["num_layers"],
        num_attention_heads=torch_params.default_heads(hidden, hp["num_heads"]),
        intermediate_size=hp["intermediate_size"] or 4 * hidden,
        max_position_embeddings=hp["max_length"],
        hidden_dropout_prob=hp["dropout"],
        attention_probs_dropout_prob=hp["dropout"],
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)},
        pad_token_id=pad,
    )
    return BertForSequenceClassification(BertConfig(**settings))


def _labelled_rows(
    data_path: Path, hp: dict[str, Any], notes: list[str]
) -> tuple[str, str, list[tuple[str, str]]]:
    """The text and label columns, and the rows that have both."""
    header, rows = text_data.read_table(data_path)
    text_col = text_data.pick_column(header, hp["text_column"], text_data.TEXT_FALLBACKS, "text")
    label_col = text_data.pick_column(
        header, hp["label_column"], text_data.LABEL_FALLBACKS, "label"
    )
    if text_col == label_col:
        raise errors.JobFailure(f"text and label columns are the same column ({text_col!r})")
    kept = [(r[text_col].strip(), r[label_col].strip()) for r in rows]
    kept = [(t, y) for t, y in kept if t and y]
    if len(kept) < len(rows):
        notes.append(f"skipped {len(rows) - len(kept)} rows with an empty text or label")
    if len(kept) < MIN_ROWS:
        raise errors.JobFailure(
            f"data file {data_path.name!r} has {len(kept)} usable rows; bert needs at least "
            f"{MIN_ROWS}"
        )
    return text_col, label_col, kept


def _classes(kept: list[tuple[str, str]], label_col: str) -> list[str]:
    classes = text_data.sorted_classes({y for _, y in kept})
    if len(classes) < 2:
        raise errors.JobFailure(
            f"label column {label_col!r} has a single class ({classes[0]!r}); "
            "classification needs at least two"
        )
    return classes


def _pretrained_setup(
    pretrained: checkpoints.Pretrained,
    classes: list[str],
    max_length: int,
    given: dict[str, Any],
    notes: list[str],
) -> tuple[Any, Any, int]:
    """The pretrained model with a head for `classes`, its tokenizer and the max_length it
    allows (its position embeddings bound the sequence)."""
    model = checkpoints.load_model(
        pretrained,
        "AutoModelForSequenceClassification",
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)},
    )
    limit = checkpoints.context_length(model.config, max_length)
    if max_length > limit:
        notes.append(
            f"max_length {max_length} is over the pretrained model's {limit}; used {limit}"
        )
        max_length = limit
    tok = text_data.pretrained_tokenizer(pretrained.path, max_length)
    ignored = [k for k in ("num_layers", "hidden_size", "num_heads", "vocab_size") if k in given]
    if ignored:
        notes.append(f"{', '.join(ignored)}: taken from the pretrained model, not given values")
    return model, tok, max_length


def _scratch_setup(
    hp: dict[str, Any], classes: list[str], state: dict[str, Any] | None, train_texts: list[str]
) -> tuple[Any, Any]:
    """A new model and its tokenizer: the checkpoint's when resuming, else trained on the rows."""
    from tokenizers import Tokenizer

    tok: Any  # as text_data's tokenizer helpers return it, whichever branch makes it
    if state is not None:
        tok = Tokenizer.from_str(state["extra"]["tokenizer"])
    else:
        tok = text_data.train_tokenizer(
            train_texts, hp["vocab_size"], hp["lowercase"], hp["max_length"]
        )
    model = _scratch_model(hp, tok.get_vocab_size(), classes, tok.token_to_id("[PAD]"))
    return model, tok


def train(
    model_type: str, data_path: Path, given: dict[str, Any], ctx: TrainContext
) -> TrainResult:
    # Found (and fetched, where downloads are allowed) before the job goes offline.
    pretrained = checkpoints.locate(given.get("pretrained_model"), ctx.data_roots)
    common.offline()
    accepted, defaults = torch_params.spec_for(model_type)
    if pretrained is not None:
        defaults = {**defaults, **torch_params.TEXT_PRETRAINED_DEFAULTS}
    hp = params.validate(given, accepted, defaults)
    choice = common.select_device(ctx.device)
    notes: list[str] = []
    if pretrained is None:
        hp = torch_params.default_learning_rate(given, hp, notes)

    text_col, label_col, kept = _labelled_rows(data_path, hp, notes)
    classes = _classes(kept, label_col)
    datasets.check_num_classes(hp["num_classes"], classes, notes)
    index = {c: i for i, c in enumerate(classes)}
    texts, labels = [t for t, _ in kept], [index[y] for _, y in kept]
    split = datasets.split_indices(len(kept), hp["validation_split"], hp["seed"], labels)
    if hp["validation_split"] == 0:
        notes.append("validation_split is 0: metrics are measured on the training data")
    ctx.report(0.02)

    signature = common.files_signature([data_path], data_path.parent)
    if pretrained is not None:
        signature += checkpoints.signature(pretrained)
    checkpoint = common.Checkpoint(
        ctx.checkpoint_dir, hp, model_type="bert", data=signature, columns=[text_col, label_col]
    )
    state = checkpoint.load()

    common.seed_all(hp["seed"])
    max_length = hp["max_length"]
    if pretrained is not None:
        model, tok, max_length = _pretrained_setup(pretrained, classes, max_length, given, notes)
    else:
        model, tok = _scratch_setup(hp, classes, state, [texts[i] for i in split[0]])
    pad = text_data.pad_id(tok, model.config)
    architecture = str(getattr(model.config, "model_type", "bert"))
    encodings = tok.encode_batch(texts)
    ids = [e.ids for e in encodings]
    truncated = sum(1 for e in encodings if e.overflowing)
    if truncated:
        notes.append(f"{truncated} texts were truncated to max_length {max_length} tokens")
    model.to(choice.device)
    task = TextClassification(model, ids, labels, split, pad, len(classes), choice.device)
    ctx.report(training.PREPARE_SHARE, {"n_train": task.n_train, "n_validation": task.n_validation})

    try:
        fitted = training.fit(
            task, hp, ctx, choice.device, checkpoint, state, {"tokenizer": tok.to_str()}
        )
        model.to("cpu")
        _save(ctx.model_dir, model, tok, classes, hp, max_length, pad, choice, text_col, pretrained)
        info = training.result_info(choice, model, fitted, notes + checkpoint.notes)
    finally:
        del model, task
        common.release(choice.device)
    info |= {
        "classes": classes,
        "num_classes": len(classes),
        "text_column": text_col,
        "label_column": label_col,
        "vocab_size": tok.get_vocab_size(),
        "max_length": max_length,
        "architecture": architecture,
    }
    if pretrained is not None:
        info |= pretrained.info()
    metrics = {**fitted.metrics, "n_train": len(split[0]), "n_validation": len(split[1])}
    return TrainResult(metrics=metrics, info=info)


def _save(
    model_dir: Path,
    model: Any,
    tok: Any,
    classes: list[str],
    hp: dict[str, Any],
    max_length: int,
    pad: int,
    choice: common.DeviceChoice,
    text_col: str,
    pretrained: checkpoints.Pretrained | None,
) -> None:
    import safetensors.torch
    import transformers

    safetensors.torch.save_model(model, str(model_dir / "model.safetensors"))
    model.config.to_json_file(str(model_dir / "config.json"))
    tok.save(str(model_dir / "tokenizer.json"))
    common.write_json(
        model_dir / META_FILE,
        {
            "format": 1,
            "runtime": "pytorch",
            "family": FAMILY,
            "model_type": "bert",
            "classes": classes,
            "max_length": max_length,
            "pad_id": pad,
            "text_column": text_col,
            "hyperparameters": hp,
            **(pretrained.info() if pretrained is not None else {}),
            "trained_device": choice.device.type,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        },
    )


# -------------------------------------------------------------------------------- inference


def load(model_dir: Path, meta: dict[str, Any]) -> common.LoadedModel:
    common.offline()
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForSequenceClassification

    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise errors.JobFailure("model metadata aijobs.json lists no classes")
    try:
        config = AutoConfig.from_pretrained(
            model_dir, local_files_only=True, trust_remote_code=False
        )
        model: Any = AutoModelForSequenceClassification.from_config(  # type: ignore[no-untyped-call]
            config, trust_remote_code=False
        )
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except (OSError, ValueError, KeyError) as exc:
        raise errors.JobFailure(f"model files could not be read: {exc}") from exc
    common.load_weights(model, model_dir)
    if config.num_labels != len(classes):
        raise errors.JobFailure("model metadata and weights disagree on the number of classes")
    max_length = int(meta.get("max_length") or 128)
    tok.no_padding()
    tok.enable_truncation(max_length)
    device = common.inference_device(meta)
    model.to(device).eval()
    return common.LoadedModel(FAMILY, model, tok, meta, device)


def parse_texts(input_data: str) -> list[str]:
    """One text, several lines (one text each), or a JSON list of strings."""
    text = input_data.strip() if isinstance(input_data, str) else ""
    if not text:
        raise errors.JobFailure("input_data is empty: give a text, or one text per line")
    if text.startswith("["):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, list):
            if not data or not all(isinstance(t, str) and t.strip() for t in data):
                raise errors.JobFailure("input_data JSON must be a list of non-empty strings")
            return [t.strip() for t in data]
    return [line.strip() for line in text.splitlines() if line.strip()]


def predict(
    loaded: common.LoadedModel,
    input_data: str,
    parameters: dict[str, Any],
    data_roots: list[Path],
) -> dict[str, Any]:
    p = params.validate(parameters, PREDICT_PARAMS, what="parameter", context=" for bert")
    texts = parse_texts(input_data)
    classes: list[str] = loaded.meta["classes"]
    limit = int(loaded.meta.get("max_length") or 128)
    max_length = min(p["max_length"] or limit, limit)
    top_k = min(p["top_k"] or len(classes), len(classes))
    tok, model, device = loaded.tokenizer, loaded.model, loaded.device
    pad = int(loaded.meta.get("pad_id") or 0)
    tok.enable_truncation(max_length)
    predictions: list[str] = []
    probabilities: list[dict[str, float]] = []
    truncated = 0
    with torch.inference_mode():
        for start in range(0, len(texts), PREDICT_BATCH):
            encodings = tok.encode_batch(texts[start : start + PREDICT_BATCH])
            encoded = [e.ids for e in encodings]
            truncated += sum(1 for e in encodings if e.overflowing)
            inputs = {k: v.to(device) for k, v in text_data.pad_batch(encoded, pad).items()}
            logits = model(**inputs).logits.float() / p["temperature"]
            probs = torch.softmax(logits, dim=-1).cpu()
            for row in probs:
                values, order = row.topk(top_k)
                predictions.append(classes[int(order[0])])
                probabilities.append(
                    {
                        classes[int(i)]: round(float(v), 6)
                        for v, i in zip(values, order, strict=True)
                    }
                )
    tok.enable_truncation(limit)
    out: dict[str, Any] = {
        "predictions": predictions,
        "probabilities": probabilities,
        "n_rows": len(texts),
    }
    if len(texts) == 1:
        out["label"] = predictions[0]
        out["confidence"] = probabilities[0][predictions[0]]
    if truncated:
        out["notes"] = [f"{truncated} texts were truncated to {max_length} tokens"]
    return out
