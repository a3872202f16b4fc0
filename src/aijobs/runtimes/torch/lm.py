"""`transformer` and `gpt`: a GPT-2-style causal language model trained on a text file or a
folder of text files, with a byte-level BPE tokenizer trained on the same text, or fine-tuned
from a checkpoint (``hyperparameters.pretrained_model``: a Hugging Face Hub id such as ``gpt2``
or a directory inside the data roots; see `checkpoints`) with its own tokenizer.

The model's context is `max_length` tokens. The text is cut into blocks of that length (shorter
when the corpus is too small to give enough blocks: the info says so), and a seeded share of
the blocks is held out; the metric is the held-out perplexity. Inference continues a prompt,
honouring temperature, max_length (new tokens), top_k, top_p and seed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aijobs import errors
from aijobs.runtimes import datasets, params
from aijobs.runtimes.base import TrainContext, TrainResult
from aijobs.runtimes.torch import checkpoints, common, training
from aijobs.runtimes.torch import params as torch_params
from aijobs.runtimes.torch.runtime import META_FILE

FAMILY = "language_model"
EOS = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".text", ".md")
MIN_BLOCK = 8
TARGET_BLOCKS = 16  # a small corpus gets blocks shorter than max_length, at least this many
PREDICT_PARAMS: dict[str, params.Param] = {
    "temperature": params.param(float, 1.0, params.number(0, 100)),
    "max_length": params.param(int, 50, params.integer(1, 8192)),
    "top_k": params.param(int, 50, params.integer(0, 1_000_000)),
    "top_p": params.param(float, 1.0, params.number(0, 1, low_open=True)),
    "seed": params.param(int, None, params.integer(0, params.SEED_MAX), nullable=True),
}


# ------------------------------------------------------------------------------------- data


def text_files(data_path: Path) -> list[Path]:
    if data_path.is_file():
        return [data_path]
    if not data_path.is_dir():
        raise errors.JobFailure(f"data_path {data_path.name!r} is neither a file nor a directory")
    found = sorted(
        p
        for p in data_path.rglob("*")
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not p.name.startswith(".")
    )
    if not found:
        raise errors.JobFailure(
            f"directory {data_path.name!r} holds no text files ({', '.join(TEXT_SUFFIXES)})"
        )
    return found


def read_documents(files: list[Path], base: Path) -> list[str]:
    docs = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            name = path.relative_to(base).as_posix() if path != base else path.name
            raise errors.JobFailure(f"text file {name!r} is not UTF-8: {exc}") from exc
        except OSError as exc:
            raise errors.JobFailure(
                f"text file {path.name!r} cannot be read: {exc.strerror}"
            ) from exc
        if text.strip():
            docs.append(text)
    if not docs:
        raise errors.JobFailure("the training text is empty: every text file is blank")
    return docs


def train_tokenizer(docs: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    return tok


def token_stream(tok: Any, docs: list[str], eos: int) -> list[int]:
    stream: list[int] = []
    for encoding in tok.encode_batch(docs):
        stream += [*encoding.ids, eos]
    return stream


# ------------------------------------------------------------------------------------- task


class LanguageModelling:
    kind = "language_model"
    num_classes = 0

    def __init__(
        self,
        model: torch.nn.Module,
        blocks: torch.Tensor,
        split: tuple[list[int], list[int]],
        device: torch.device,
    ) -> None:
        self.model = model
        self.blocks = blocks.to(device)  # every block is max_length tokens: no padding needed
        self.train_idx = torch.tensor(split[0], dtype=torch.long)
        self.val_idx = torch.tensor(split[1], dtype=torch.long)
        self.n_train, self.n_validation = len(split[0]), len(split[1])
        self.device = device

    def _batch(self, indices: torch.Tensor) -> training.Batch:
        ids = self.blocks[indices.to(self.device)]
        return training.Batch(ids, ids, len(indices))

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[training.Batch]:
        order = self.train_idx[torch.randperm(self.n_train, generator=generator)]
        for start in range(0, self.n_train, batch_size):
            yield self._batch(order[start : start + batch_size])

    def validation_batches(self, batch_size: int) -> Iterator[training.Batch]:
        for start in range(0, self.n_validation, batch_size):
            yield self._batch(self.val_idx[start : start + batch_size])

    def logits(self, inputs: Any) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=inputs, use_cache=False).logits
        return out


# --------------------------------------------------------------------------------- training


def _model(hp: dict[str, Any], vocab_size: int, eos: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    hidden = hp["hidden_size"]
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=hp["max_length"],
        n_embd=hidden,
        n_layer=hp["num_layers"],
        n_head=torch_params.default_heads(hidden, hp["num_heads"]),
        n_inner=hp["intermediate_size"],
        resid_pdrop=hp["dropout"],
        embd_pdrop=hp["dropout"],
        attn_pdrop=hp["dropout"],
        bos_token_id=eos,
        eos_token_id=eos,  # no pad token: every training block is full, nothing is padded
    )
    return GPT2LMHeadModel(config)


def block_size(n_tokens: int, max_length: int) -> int:
    """max_length, or shorter so that a small corpus still gives TARGET_BLOCKS blocks."""
    size = min(max_length, n_tokens // TARGET_BLOCKS)
    return max(size, MIN_BLOCK)


def _pretrained_setup(
    pretrained: checkpoints.Pretrained, hp: dict[str, Any], given: dict[str, Any], notes: list[str]
) -> tuple[Any, Any, str, int]:
    """The checkpoint's model and tokenizer, its end-of-text token and context length."""
    from tokenizers import Tokenizer

    tokenizer_file = pretrained.path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise errors.JobFailure(f"pretrained_model {pretrained.name!r} has no tokenizer.json")
    model = checkpoints.load_model(pretrained, "AutoModelForCausalLM")
    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_padding()
    tok.no_truncation()
    eos_id = getattr(model.config, "eos_token_id", None)
    eos = tok.id_to_token(eos_id) if isinstance(eos_id, int) else None
    if eos is None:
        raise errors.JobFailure(
            f"pretrained_model {pretrained.name!r} names no end-of-text token (eos_token_id)"
        )
    context = checkpoints.context_length(model.config, hp["max_length"])
    ignored = [k for k in ("num_layers", "hidden_size", "num_heads", "vocab_size") if k in given]
    if ignored:
        notes.append(f"{', '.join(ignored)}: taken from the pretrained model, not given values")
    if hp["max_length"] > context:
        notes.append(f"max_length {hp['max_length']} is over the model's {context}; used {context}")
    return model, tok, eos, context


def _scratch_setup(
    hp: dict[str, Any], state: dict[str, Any] | None, docs: list[str]
) -> tuple[Any, Any, str, int]:
    """A new model and its tokenizer: the checkpoint's when resuming, else trained on the text."""
    from tokenizers import Tokenizer

    tok = (
        Tokenizer.from_str(state["extra"]["tokenizer"])
        if state is not None
        else train_tokenizer(docs, hp["vocab_size"])
    )
    eos = tok.token_to_id(EOS)
    assert isinstance(eos, int)  # the trainer adds it as a special token
    common.seed_all(hp["seed"])
    return _model(hp, tok.get_vocab_size(), eos), tok, EOS, hp["max_length"]


def _blocks(stream: list[int], max_length: int, notes: list[str]) -> tuple[torch.Tensor, int]:
    size = block_size(len(stream), max_length)
    n_blocks = len(stream) // size
    if n_blocks < 2:
        raise errors.JobFailure(
            f"too little text to train on: {len(stream)} tokens; a language model needs at least "
            f"{2 * MIN_BLOCK}"
        )
    if size < max_length:
        notes.append(
            f"the text has {len(stream)} tokens: trained on blocks of {size} tokens rather than "
            f"max_length {max_length} (the model's context is still {max_length})"
        )
    return torch.tensor(stream[: n_blocks * size], dtype=torch.long).view(n_blocks, size), size


def train(
    model_type: str, data_path: Path, given: dict[str, Any], ctx: TrainContext
) -> TrainResult:
    # Found (and fetched, where downloads are allowed) before the job goes offline.
    pretrained = checkpoints.locate(given.get("pretrained_model"), ctx.data_roots)
    common.offline()
    accepted, defaults = torch_params.spec_for(model_type)
    if pretrained is not None:
        defaults = {**defaults, **torch_params.LM_PRETRAINED_DEFAULTS}
    hp = params.validate(given, accepted, defaults)
    choice = common.select_device(ctx.device)
    notes: list[str] = []
    if pretrained is None:
        hp = torch_params.default_learning_rate(given, hp, notes)
    files = text_files(data_path)
    base = data_path if data_path.is_dir() else data_path.parent
    docs = read_documents(files, base)
    ctx.report(0.02)

    signature = common.files_signature(files, base)
    if pretrained is not None:
        signature += checkpoints.signature(pretrained)
    checkpoint = common.Checkpoint(
        ctx.checkpoint_dir, hp, model_type="language_model", data=signature
    )
    state = checkpoint.load()
    if pretrained is not None:
        model, tok, eos, context = _pretrained_setup(pretrained, hp, given, notes)
        common.seed_all(hp["seed"])
    else:
        model, tok, eos, context = _scratch_setup(hp, state, docs)
    stream = token_stream(tok, docs, tok.token_to_id(eos))
    blocks, size = _blocks(stream, min(hp["max_length"], context), notes)
    split = datasets.split_indices(len(blocks), hp["validation_split"], hp["seed"])
    if hp["validation_split"] == 0:
        notes.append("validation_split is 0: perplexity is measured on the training text")

    architecture = str(getattr(model.config, "model_type", "gpt2"))
    model.to(choice.device)
    task = LanguageModelling(model, blocks, split, choice.device)
    ctx.report(training.PREPARE_SHARE, {"n_train": task.n_train, "n_validation": task.n_validation})
    try:
        fitted = training.fit(
            task, hp, ctx, choice.device, checkpoint, state, {"tokenizer": tok.to_str()}
        )
        model.to("cpu")
        saved = Saved(model_type, hp, size, eos, context, pretrained)
        _save(ctx.model_dir, model, tok, saved, choice)
        info = training.result_info(choice, model, fitted, notes + checkpoint.notes)
    finally:
        del model, task
        common.release(choice.device)
    info |= {
        "architecture": architecture,
        "vocab_size": tok.get_vocab_size(),
        "context_length": context,
        "block_size": size,
        "tokens": len(stream),
        "text_files": len(files),
        **(pretrained.info() if pretrained is not None else {}),
    }
    metrics = {
        **fitted.metrics,
        "n_train": len(split[0]),
        "n_validation": len(split[1]),
        "tokens_per_second": round((fitted.samples_per_second or 0) * size, 1) or None,
    }
    return TrainResult(metrics=metrics, info=info)


@dataclass(frozen=True)
class Saved:
    """What a trained language model's metadata records beside its weights."""

    model_type: str
    hp: dict[str, Any]
    block: int
    eos: str
    context: int
    pretrained: checkpoints.Pretrained | None


def _save(model_dir: Path, model: Any, tok: Any, saved: Saved, choice: common.DeviceChoice) -> None:
    import safetensors.torch
    import transformers

    safetensors.torch.save_model(model, str(model_dir / common.WEIGHTS_FILE))
    model.config.to_json_file(str(model_dir / "config.json"))
    tok.save(str(model_dir / "tokenizer.json"))
    common.write_json(
        model_dir / META_FILE,
        {
            "format": 1,
            "runtime": "pytorch",
            "family": FAMILY,
            "model_type": saved.model_type,
            "context_length": saved.context,
            "block_size": saved.block,
            "eos_token": saved.eos,
            "hyperparameters": saved.hp,
            **(saved.pretrained.info() if saved.pretrained is not None else {}),
            "trained_device": choice.device.type,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        },
    )


# -------------------------------------------------------------------------------- inference


def load(model_dir: Path, meta: dict[str, Any]) -> common.LoadedModel:
    common.offline()
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(
            model_dir, local_files_only=True, trust_remote_code=False
        )
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except (OSError, ValueError, KeyError) as exc:
        raise errors.JobFailure(f"model files could not be read: {exc}") from exc
    model: Any = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        config, trust_remote_code=False
    )
    common.load_weights(model, model_dir)
    device = common.inference_device(meta)
    model.to(device).eval()
    return common.LoadedModel(FAMILY, model, tok, meta, device)


def _cache_argument(model: torch.nn.Module) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); accept either."""
    names = inspect.signature(model.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def sample_next(
    logits: torch.Tensor, p: dict[str, Any], generator: torch.Generator | None
) -> torch.Tensor:
    """One token id from the last position's logits: greedy at temperature 0, else sampled."""
    if p["temperature"] == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / p["temperature"]
    if p["top_k"] and p["top_k"] < logits.shape[-1]:
        kth = torch.topk(logits, p["top_k"]).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p["top_p"] < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= p["top_p"]  # keep the first over
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)


def predict(
    loaded: common.LoadedModel,
    input_data: str,
    parameters: dict[str, Any],
    data_roots: list[Path],
) -> dict[str, Any]:
    kind = loaded.meta.get("model_type", "transformer")
    p = params.validate(parameters, PREDICT_PARAMS, what="parameter", context=f" for {kind}")
    if not isinstance(input_data, str):
        raise errors.JobFailure("input_data must be a string: the prompt to continue")
    tok, device = loaded.tokenizer, loaded.device
    model: Any = loaded.model
    context = int(loaded.meta.get("context_length") or checkpoints.context_length(model.config, 0))
    eos = tok.token_to_id(loaded.meta.get("eos_token") or EOS)
    prompt = tok.encode(input_data).ids if input_data else []
    if len(prompt) >= context:
        raise errors.JobFailure(
            f"the prompt is {len(prompt)} tokens, but this model's context is {context} tokens "
            f"(its max_length): shorten the prompt to under {context} tokens"
        )
    room = context - max(len(prompt), 1)
    wanted = p["max_length"]
    new_tokens = min(wanted, room)
    generator = torch.Generator().manual_seed(p["seed"]) if p["seed"] is not None else None
    cache_arg = _cache_argument(model)
    ids = torch.tensor([prompt or [eos]], dtype=torch.long, device=device)
    generated: list[int] = []
    finish = "length"
    cache: Any = None
    with torch.inference_mode():
        step_input = ids
        for _ in range(new_tokens):
            out = model(input_ids=step_input, use_cache=True, **{cache_arg: cache})
            cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            token = sample_next(out.logits[:, -1, :].float(), p, generator)
            value = int(token.item())
            if value == eos:
                finish = "eos"
                break
            generated.append(value)
            step_input = token.view(1, 1)
    if finish == "length" and new_tokens < wanted:
        finish = "context"
    continuation = tok.decode(generated)
    out_data: dict[str, Any] = {
        "generated_text": continuation,
        "text": input_data + continuation,
        "prompt_tokens": len(prompt),
        "new_tokens": len(generated),
        "finish_reason": finish,
    }
    if finish == "context":
        out_data["notes"] = [
            f"stopped after {new_tokens} new tokens at the model's context of {context} tokens"
        ]
    return out_data
