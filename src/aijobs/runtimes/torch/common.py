"""What every PyTorch model type shares around its training loop (`training`): the device,
seeding, checkpoints (resume after a rescue), the model's files and loading it for inference.

Imported only inside the runtime's methods (the worker's child processes): it imports torch.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aijobs import errors

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
TRUTHY = ("1", "true", "yes", "on")


def offline() -> None:
    """Never reach for a model hub: set before transformers is imported."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUTHY


# ------------------------------------------------------------------------------------ device


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    description: str  # "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    note: str | None = None


def select_device(requested: str) -> DeviceChoice:
    """CUDA for a GPU job (or a clear failure without it), else the CPU."""
    cpu = torch.device("cpu")
    if requested == "cuda":
        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            name = torch.cuda.get_device_name(index)
            return DeviceChoice(torch.device("cuda", index), f"cuda:{index} ({name})")
        if truthy(os.environ.get("AIJOBS_ALLOW_MISSING_GPU")):
            return DeviceChoice(
                cpu,
                "cpu",
                "this job asked for a GPU but CUDA is not available to this worker; it ran on "
                "the CPU because AIJOBS_ALLOW_MISSING_GPU is set",
            )
        raise errors.JobFailure("this job requires a GPU, but CUDA is not available to this worker")
    if requested not in ("cpu", ""):
        raise errors.JobFailure(f"unknown device {requested!r}; expected 'cpu' or 'cuda'")
    return DeviceChoice(cpu, "cpu")


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # every device's generator too
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def release(device: torch.device) -> None:
    """Give memory back now: the caching allocator keeps freed GPU blocks otherwise, and
    cuBLAS keeps its workspaces (about 65 MB on an H200) allocated until told to let go."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None:  # CUDA builds of torch have it
            clear_workspaces()
        torch.cuda.empty_cache()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on a GPU that supports it; plain float32 elsewhere."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- checkpoints


def fingerprint(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


# The hyperparameters a checkpoint need not agree on: how long to train (a job resumed with more
# epochs goes on from its checkpoint) and how often to save.
NOT_FINGERPRINTED = ("epochs", "checkpoint_every_seconds")


def files_signature(paths: list[Path], base: Path) -> list[tuple[str, int, int]]:
    """What identifies the training data cheaply: relative path, size and mtime of each file."""
    out = []
    for path in paths:
        stat = path.stat()
        out.append((path.relative_to(base).as_posix(), stat.st_size, stat.st_mtime_ns))
    return out


class Checkpoint:
    """One job's last completed epoch: model, optimizer, RNG states, history, runtime extras.

    Written with torch.save from tensors and plain containers only, read back with
    ``weights_only=True`` (no pickle of arbitrary objects either way), atomically replaced.
    Used only when its fingerprint (model type, hyperparameters, data) matches this run.
    Saved at the end of an epoch once `every_seconds` have passed since the last save (or the
    start): a rescued job loses at most that much training plus an epoch, and a ResNet-18 on
    two CPU cores no longer spends 4 % of its time writing 134 MB after each 10-second epoch.
    """

    def __init__(self, directory: Path, hp: dict[str, Any], **identity: Any) -> None:
        """`identity`: what else a run must share with the checkpoint (model type, data...)."""
        self.directory = directory
        self.path = directory / CHECKPOINT_FILE
        kept = {k: v for k, v in hp.items() if k not in NOT_FINGERPRINTED}
        self.fingerprint = fingerprint({**identity, "hp": kept})
        self.enabled = directory.is_dir()  # the worker creates it; absent: no checkpoints
        self.every_seconds = float(hp["checkpoint_every_seconds"])
        self.last_saved = time.monotonic()
        self.notes: list[str] = []

    def load(self) -> dict[str, Any] | None:
        if not self.enabled or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            self.notes.append(f"the checkpoint could not be read safely and was ignored: {exc}")
            return None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            self.notes.append("the checkpoint is not in this runtime's format and was ignored")
            return None
        if state.get("fingerprint") != self.fingerprint:
            self.notes.append(
                "a checkpoint from a different configuration or data was ignored; started over"
            )
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Written if the interval has passed (a state dict only references the tensors)."""
        if not self.enabled or time.monotonic() - self.last_saved < self.every_seconds:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({**state, "format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.path)
        self.last_saved = time.monotonic()


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise errors.JobFailure(f"model file {path.name} is missing or unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise errors.JobFailure(f"model file {path.name} is not a JSON object")
    return data


# -------------------------------------------------------------------------------- inference


@dataclass
class LoadedModel:
    """What the runtime's load returns: the model in eval mode and what predicting needs."""

    family: str  # "text_classifier", "language_model" or "image_classifier"
    model: torch.nn.Module
    tokenizer: Any  # a tokenizers.Tokenizer, or None for images
    meta: dict[str, Any]  # aijobs.json
    device: torch.device


WEIGHTS_FILE = "model.safetensors"


def load_weights(model: torch.nn.Module, model_dir: Path) -> None:
    """Weights from model.safetensors into `model`, exactly (no pickle is ever read)."""
    import safetensors.torch

    path = model_dir / WEIGHTS_FILE
    if not path.is_file():
        raise errors.JobFailure(f"model file {WEIGHTS_FILE} is missing")
    try:
        safetensors.torch.load_model(model, str(path), strict=True)
    except Exception as exc:  # not a safetensors file (a pickle, truncated) or wrong tensors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise errors.JobFailure(
            f"model file {WEIGHTS_FILE} is not valid for this model: {first}"
        ) from exc


def inference_device(meta: dict[str, Any]) -> torch.device:
    """The GPU for a model trained on one (served by a GPU queue's worker), when CUDA is here."""
    if meta.get("trained_device") == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
