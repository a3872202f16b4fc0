"""Where `hyperparameters.pretrained_model` comes from: a directory inside the data roots, or a
Hugging Face Hub id (``bert-base-uncased``, ``org/name``, ``org/name@revision``) fetched through
the standard cache (``HF_HOME``), so a checkpoint is downloaded once per host and shared.

Only what fine-tuning reads is fetched: the configuration, safetensors weights and the tokenizer
files. Pickle weights are never loaded and a checkpoint's own code never runs (no
``trust_remote_code``). ``AIJOBS_ALLOW_DOWNLOADS=false`` or ``HF_HUB_OFFLINE=1`` keeps the worker
off the network: then only the cache and the data roots can serve a checkpoint.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aijobs import datapaths, errors
from aijobs.runtimes.torch import common

HUB_FILES = [
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
]
_NAME = r"[A-Za-z0-9][\w.-]*"
HUB_ID = re.compile(rf"(?P<repo>{_NAME}(?:/{_NAME})?)(?:@(?P<revision>[\w./-]+))?")


@dataclass(frozen=True)
class Pretrained:
    path: Path  # a local directory: in a data root, or the cache's snapshot
    name: str  # as the job gave it
    revision: str | None = None  # the commit of a Hub checkpoint

    def info(self) -> dict[str, Any]:
        """What the job's result records of where it started from."""
        return {"pretrained_from": self.name, "pretrained_revision": self.revision}


def downloads_allowed() -> bool:
    from aijobs.settings import Settings

    return Settings().allow_downloads and not common.truthy(os.environ.get("HF_HUB_OFFLINE"))


def hub_cache() -> Path:
    """The standard Hugging Face cache, read from the environment now (not at import)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    home = os.environ.get("HF_HOME")
    if not home:
        home = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    return Path(home) / "hub"


def locate(value: str | None, data_roots: list[Path]) -> Pretrained | None:
    """The checkpoint `value` names. Called before the job goes offline (it may download)."""
    if not value:
        return None
    match = HUB_ID.fullmatch(value)
    if match is None or value.startswith("."):
        return Pretrained(_local(value, data_roots), value)
    try:
        path = datapaths.resolve_data_path(value, data_roots)
    except errors.InvalidDataPath:
        path = None
    if path is not None and path.is_dir():
        return Pretrained(path, value)  # a directory in a data root wins over a Hub name
    return _from_hub(value, match["repo"], match["revision"])


def _local(value: str, data_roots: list[Path]) -> Path:
    try:
        path = datapaths.resolve_data_path(value, data_roots)
    except errors.InvalidDataPath as exc:
        raise errors.JobFailure(f"pretrained_model: {exc.detail}") from exc
    if not path.is_dir():
        raise errors.JobFailure(f"pretrained_model {value!r} is not a directory")
    return path


def _from_hub(value: str, repo: str, revision: str | None) -> Pretrained:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    allowed, cache = downloads_allowed(), hub_cache()
    try:
        folder = snapshot_download(
            repo,
            revision=revision,
            allow_patterns=HUB_FILES,
            cache_dir=cache,
            local_files_only=not allowed,
        )
    except LocalEntryNotFoundError as exc:
        if allowed:
            reason = "the Hugging Face Hub could not be reached"
        else:
            reason = "downloads are off (AIJOBS_ALLOW_DOWNLOADS=false or HF_HUB_OFFLINE=1)"
        raise errors.JobFailure(
            f"pretrained_model {value!r} is not in the Hugging Face cache ({cache}) nor a "
            f"directory in the data roots, and {reason}: fetch it into that cache on a host "
            f"with network access (`hf download {repo}`) or copy it into a data root"
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise errors.JobFailure(
            f"pretrained_model {value!r} was not found on the Hugging Face Hub, or is gated "
            f"(needs a token with access): {type(exc).__name__}"
        ) from exc
    except (HfHubHTTPError, ValueError, OSError) as exc:
        raise errors.JobFailure(f"pretrained_model {value!r} could not be fetched: {exc}") from exc
    path = Path(folder)
    return Pretrained(path, value, revision=path.name)  # snapshots/<commit>


def signature(pretrained: Pretrained) -> list[tuple[str, int, int]]:
    """What identifies the checkpoint's weights, for resuming only from the same start."""
    directory = pretrained.path
    return common.files_signature(
        [*sorted(directory.glob("*.safetensors")), directory / "config.json"], directory
    )


def load_model(pretrained: Pretrained, auto_class: str, **config_changes: Any) -> Any:
    """The checkpoint's model through a transformers Auto class, from safetensors only;
    `config_changes` (e.g. the number of labels) replace its configuration's values, and the
    weights whose shape they change start anew."""
    directory, name = pretrained.path, pretrained.name
    if not (directory / "config.json").is_file():
        raise errors.JobFailure(f"pretrained_model {name!r} has no config.json")
    if not any(directory.glob("*.safetensors")):
        pickled = [p.name for p in (*directory.glob("*.bin"), *directory.glob("*.pt"))]
        hint = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
        raise errors.JobFailure(
            f"pretrained_model {name!r} has no .safetensors weights{hint}; convert it to "
            "safetensors"
        )
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
        for key, value in config_changes.items():
            setattr(config, key, value)
        return getattr(transformers, auto_class).from_pretrained(
            directory,
            config=config,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise errors.JobFailure(f"pretrained_model {name!r} could not be loaded: {exc}") from exc


def context_length(config: Any, default: int) -> int:
    """The longest sequence the model's position embeddings take."""
    for key in ("max_position_embeddings", "n_positions"):
        if isinstance(value := getattr(config, key, None), int) and value > 0:
            return value
    return default
