"""`bert`: a BERT-style encoder that classifies text, trained on a CSV of text and labels.

Built from its configuration (layers, hidden size, heads, max_length) with a WordPiece tokenizer
trained on the training rows, or fine-tuned from a local pretrained directory
(``hyperparameters.pretrained_model``, inside the data roots; safetensors weights only). Batches
are padded to their longest sequence, not to max_length.

Saved as a Hugging Face directory: config.json + model.safetensors + tokenizer.json, beside
aijobs.json (classes, lengths, hyperparameters).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aijobs import datapaths, errors
from aijobs.runtimes import datasets
from aijobs.runtimes import torch_common as common
from aijobs.runtimes import torch_params as params
from aijobs.runtimes.base import TrainContext, TrainResult

FAMILY = "text_classifier"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXT_FALLBACKS = ("text", "sentence", "review", "content", "document")
LABEL_FALLBACKS = ("label", "labels", "target", "sentiment", "class", "category")
MIN_ROWS = 4
PREDICT_BATCH = 64
PREDICT_PARAMS: dict[str, params.Param] = {
    "temperature": params.param(float, 1.0, params._float(0, 100, low_open=True)),
    "max_length": params.param(int, None, params._int(1, 1_000_000), nullable=True),
    "top_k": params.param(int, None, params._int(1, 1_000_000), nullable=True),
}


# ------------------------------------------------------------------------------------- data


def read_table(data_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV's header and rows (as strings)."""
    name = data_path.name
    if data_path.is_dir():
        raise errors.JobFailure(
            f"data_path {name!r} is a directory; bert needs a CSV file with text and label columns"
        )
    csv.field_size_limit(1 << 24)
    try:
        with data_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, skipinitialspace=True)
            header = [str(c).strip() for c in reader.fieldnames or []]
            rows = [
                {str(k).strip(): (v or "") for k, v in row.items() if k is not None}
                for row in reader
            ]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise errors.JobFailure(f"data file {name!r} is not a readable UTF-8 CSV: {exc}") from exc
    except OSError as exc:
        raise errors.JobFailure(f"data file {name!r} cannot be read: {exc.strerror}") from exc
    if not header:
        raise errors.JobFailure(f"data file {name!r} is empty")
    return header, rows


def pick_column(header: list[str], given: str | None, fallbacks: tuple[str, ...], role: str) -> str:
    key = f"{role}_column"
    if given is not None:
        if given not in header:
            raise errors.JobFailure(
                f"{role} column {given!r} (hyperparameter {key!r}) is not in the CSV; "
                f"its columns are: {', '.join(header)}"
            )
        return given
    lowered = {c.lower(): c for c in header}
    for candidate in fallbacks:
        if candidate in lowered:
            return lowered[candidate]
    raise errors.JobFailure(
        f"the CSV has no {role} column (looked for {', '.join(fallbacks)}); its columns are: "
        f"{', '.join(header)}; name one with hyperparameters.{key}"
    )


def sorted_classes(values: set[str]) -> list[str]:
    """Class names in a stable order: numerically when they are all integers."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


# -------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int, lowercase: bool, max_length: int) -> Any:
    """A WordPiece tokenizer learned from `texts`, the same for the same texts on every run.

    tokenizers' WordPieceTrainer numbers the ``##`` pieces in hash-map order, so ties pick
    different merges from run to run (huggingface/tokenizers#1794). Plain BPE training is
    deterministic: its pieces are learned (half the vocabulary), then each is offered both at the
    start of a word and as a ``##`` continuation, numbered in sorted order.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    learner = Tokenizer(models.BPE(unk_token="[UNK]"))
    learner.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    learner.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=max(len(SPECIAL_TOKENS) + 1, vocab_size // 2),
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    learner.train_from_iterator(texts, trainer)
    pieces = set(learner.get_vocab()) - set(SPECIAL_TOKENS)
    ordered = sorted(pieces | {f"##{p}" for p in pieces})
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *ordered])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return _finish_tokenizer(tok, max_length)


def _finish_tokenizer(tok: Any, max_length: int) -> Any:
    from tokenizers import processors

    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls is not None and sep is not None:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def pretrained_tokenizer(directory: Path, max_length: int) -> Any:
    from tokenizers import Tokenizer

    if (directory / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length)
        return tok
    if (directory / "vocab.txt").is_file():
        from tokenizers import implementations

        lowercase = True
        config = directory / "tokenizer_config.json"
        if config.is_file():
            lowercase = bool(json.loads(config.read_text()).get("do_lower_case", True))
        wrapped = implementations.BertWordPieceTokenizer(  # type: ignore[attr-defined]
            str(directory / "vocab.txt"), lowercase=lowercase
        )
        return _finish_tokenizer(Tokenizer.from_str(wrapped.to_str()), max_length)
    raise errors.JobFailure(
        "pretrained_model has no tokenizer (tokenizer.json or vocab.txt) beside its weights"
    )


def pad_id(tok: Any, config: Any) -> int:
    found = tok.token_to_id("[PAD]")
    if found is None:
        found = getattr(config, "pad_token_id", None)
    return int(found or 0)


def pad_batch(seqs: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask, padded to the longest sequence of this batch."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


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

    def _batch(self, indices: list[int]) -> common.Batch:
        inputs = pad_batch([self.ids[i] for i in indices], self.pad)
        on_device = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        targets = self.labels[indices].to(self.device, non_blocking=True)
        return common.Batch(on_device, targets, len(indices))

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[common.Batch]:
        order = torch.randperm(self.n_train, generator=generator).tolist()
        for start in range(0, self.n_train, batch_size):
            yield self._batch([self.train_idx[i] for i in order[start : start + batch_size]])

    def validation_batches(self, batch_size: int) -> Iterator[common.Batch]:
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
        num_attention_heads=params.default_heads(hidden, hp["num_heads"]),
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


def _pretrained_model(directory: Path, classes: list[str]) -> Any:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if not (directory / "config.json").is_file():
        raise errors.JobFailure("pretrained_model has no config.json")
    if not any(directory.glob("*.safetensors")):
        pickled = [p.name for p in directory.glob("*.bin")] + [
            p.name for p in directory.glob("*.pt")
        ]
        hint = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
        raise errors.JobFailure(
            f"pretrained_model has no .safetensors weights{hint}; convert it to safetensors"
        )
    try:
        config = AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
        config.num_labels = len(classes)
        config.id2label = dict(enumerate(classes))
        config.label2id = {c: i for i, c in enumerate(classes)}
        return AutoModelForSequenceClassification.from_pretrained(
            directory,
            config=config,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise errors.JobFailure(f"pretrained_model could not be loaded: {exc}") from exc


def _resolve_pretrained(value: str, ctx: TrainContext) -> Path:
    try:
        path = datapaths.resolve_data_path(value, ctx.data_roots)
    except errors.InvalidDataPath as exc:
        raise errors.JobFailure(f"pretrained_model: {exc.detail}") from exc
    if not path.is_dir():
        raise errors.JobFailure(f"pretrained_model {value!r} is not a directory")
    return path


def train(
    model_type: str, data_path: Path, given: dict[str, Any], ctx: TrainContext
) -> TrainResult:
    common.offline()
    accepted, defaults = params.spec_for(model_type)
    if given.get("pretrained_model") is not None:
        defaults = {**defaults, **params.TEXT_PRETRAINED_DEFAULTS}
    hp = params.validate(given, accepted, defaults)
    choice = common.select_device(ctx.device)
    notes: list[str] = []
    if given.get("pretrained_model") is None:
        hp = params.default_learning_rate(given, hp, notes)

    header, rows = read_table(data_path)
    text_col = pick_column(header, hp["text_column"], TEXT_FALLBACKS, "text")
    label_col = pick_column(header, hp["label_column"], LABEL_FALLBACKS, "label")
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
    classes = sorted_classes({y for _, y in kept})
    if len(classes) < 2:
        raise errors.JobFailure(
            f"label column {label_col!r} has a single class ({classes[0]!r}); "
            "classification needs at least two"
        )
    datasets.check_num_classes(hp["num_classes"], classes, notes)
    index = {c: i for i, c in enumerate(classes)}
    texts, labels = [t for t, _ in kept], [index[y] for _, y in kept]
    split = common.split_indices(len(kept), hp["validation_split"], hp["seed"], labels)
    if hp["validation_split"] == 0:
        notes.append("validation_split is 0: metrics are measured on the training data")
    ctx.report(0.02)

    pretrained = (
        _resolve_pretrained(hp["pretrained_model"], ctx) if hp["pretrained_model"] else None
    )
    signature = common.files_signature([data_path], data_path.parent)
    if pretrained is not None:
        weights = [*sorted(pretrained.glob("*.safetensors")), pretrained / "config.json"]
        signature += common.files_signature(weights, pretrained)
    fingerprint = common.fingerprint(
        {"model_type": "bert", "hp": {k: v for k, v in hp.items() if k != "epochs"},
         "data": signature, "columns": [text_col, label_col]}
    )  # fmt: skip
    checkpoint = common.Checkpoint(ctx.checkpoint_dir, fingerprint)
    state = checkpoint.load()

    common.seed_all(hp["seed"])
    max_length = hp["max_length"]
    if pretrained is not None:
        model = _pretrained_model(pretrained, classes)
        limit = getattr(model.config, "max_position_embeddings", max_length)
        if max_length > limit:
            notes.append(
                f"max_length {max_length} is over the pretrained model's {limit}; used {limit}"
            )
            max_length = limit
        tok = pretrained_tokenizer(pretrained, max_length)
        ignored = [
            k for k in ("num_layers", "hidden_size", "num_heads", "vocab_size") if k in given
        ]
        if ignored:
            notes.append(f"{', '.join(ignored)}: taken from the pretrained model, not given values")
    else:
        from tokenizers import Tokenizer

        if state is not None:
            tok = Tokenizer.from_str(state["extra"]["tokenizer"])
        else:
            train_texts = [texts[i] for i in split[0]]
            tok = train_tokenizer(train_texts, hp["vocab_size"], hp["lowercase"], max_length)
        model = _scratch_model(hp, tok.get_vocab_size(), classes, tok.token_to_id("[PAD]"))
    pad = pad_id(tok, model.config)
    architecture = str(getattr(model.config, "model_type", "bert"))
    encodings = tok.encode_batch(texts)
    ids = [e.ids for e in encodings]
    truncated = sum(1 for e in encodings if e.overflowing)
    if truncated:
        notes.append(f"{truncated} texts were truncated to max_length {max_length} tokens")
    model.to(choice.device)
    task = TextClassification(model, ids, labels, split, pad, len(classes), choice.device)
    ctx.report(common.PREPARE_SHARE, {"n_train": task.n_train, "n_validation": task.n_validation})

    try:
        fitted = common.fit(
            task, hp, ctx, choice.device, checkpoint, state, {"tokenizer": tok.to_str()}
        )
        model.to("cpu")
        _save(ctx.model_dir, model, tok, classes, hp, max_length, pad, choice, text_col, pretrained)
        info = common.result_info(choice, model, fitted, notes + checkpoint.notes)
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
        info["pretrained_from"] = pretrained.name
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
    pretrained: Path | None,
) -> None:
    import safetensors.torch
    import transformers

    safetensors.torch.save_model(model, str(model_dir / "model.safetensors"))
    model.config.to_json_file(str(model_dir / "config.json"))
    tok.save(str(model_dir / "tokenizer.json"))
    common.write_json(
        model_dir / "aijobs.json",
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
            "pretrained_from": pretrained.name if pretrained is not None else None,
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
            inputs = {k: v.to(device) for k, v in pad_batch(encoded, pad).items()}
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
