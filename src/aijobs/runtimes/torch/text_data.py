"""The text side of `bert`: the CSV of texts and labels, the WordPiece tokenizer (trained on the
training rows, or a pretrained model's own) and batches padded to their longest sequence.

Imported only inside the runtime's methods (the worker's child processes): it imports torch.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from aijobs import errors

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXT_FALLBACKS = ("text", "sentence", "review", "content", "document")
LABEL_FALLBACKS = ("label", "labels", "target", "sentiment", "class", "category")


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
