"""The model store: where a job's model files live, their metadata, and their checksum.

Layout: ``<models_dir>/<model_id>/attempt-<n>/`` holds the files a runtime wrote for one attempt
of a training job plus ``metadata.json`` (model_id, framework, metrics, sha256, ...). Attempt
directories keep a rescued job's second run from writing over its first run's files.

A runtime writes into a staging directory beside it (``.attempt-<n>.partial``); `publish` makes
every file durable (fsync) and renames the directory into place before the model's record is
committed, so a record never names a directory a crash or a power cut could have left partial.

The checksum covers every file of the model except ``metadata.json`` (which records it), so a
model whose files changed after training is refused before a runtime loads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aijobs import errors

METADATA_FILE = "metadata.json"
_TMP_PREFIX = ".metadata."
_STAGING_SUFFIX = ".partial"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def model_id_for(model_type: str, job_id: str) -> str:
    """``<model_type>_model_<first 12 hex digits of the job's uuid>``, safe as a directory name.

    model_type comes from the user (unknown types go to the default queue), so anything but
    letters, digits, ``_`` and ``-`` is replaced: ``../x`` can never name a path.
    """
    kind = _UNSAFE.sub("_", model_type).strip("_")[:64] or "model"
    hexdigits = job_id.removeprefix("job_").replace("-", "").lower()
    if len(hexdigits) < 12 or not all(c in "0123456789abcdef" for c in hexdigits[:12]):
        hexdigits = hashlib.sha256(job_id.encode()).hexdigest()
    return f"{kind}_model_{hexdigits[:12]}"


def is_valid_model_id(model_id: str) -> bool:
    """Whether a (user-supplied) model id can name a directory under the model store."""
    return bool(_MODEL_ID.fullmatch(model_id)) and ".." not in model_id


def attempt_model_dir(models_dir: Path, model_id: str, attempt: int) -> Path:
    """The directory one attempt of a training job writes its model files into."""
    if not is_valid_model_id(model_id):
        raise errors.ModelNotFound(f"model {model_id!r} not found (not a valid model id)")
    return models_dir / model_id / f"attempt-{int(attempt)}"


def staging_dir(model_dir: Path) -> Path:
    """Where an attempt's runtime writes the model files `publish` later moves to model_dir."""
    return model_dir.with_name(f".{model_dir.name}{_STAGING_SUFFIX}")


def publish(staging: Path, model_dir: Path, metadata: dict[str, Any]) -> None:
    """Move a trained model into place durably: metadata.json written, every file and directory
    of `staging` fsynced, `staging` renamed to `model_dir`, the parents fsynced. A crash at any
    point leaves no `model_dir`, or a complete one."""
    write_metadata(staging, metadata)
    sync_tree(staging)
    if model_dir.exists():  # an earlier try of this very attempt; nothing records it
        shutil.rmtree(model_dir)
    os.replace(staging, model_dir)
    _fsync_dir(model_dir.parent)
    _fsync_dir(model_dir.parent.parent)  # <model_id> may be new in the model store


def sync_tree(root: Path) -> None:
    """fsync every file under `root`, then every directory, deepest first: the runtimes' own
    writes (torch.save, joblib, Keras) only reach the page cache."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(directory))


def _excluded(relative: str) -> bool:
    """metadata.json and write_metadata's temporary files, at the top level only."""
    top = "/" not in relative
    return top and (relative == METADATA_FILE or relative.startswith(_TMP_PREFIX))


def checksum(model_dir: Path) -> str:
    """sha256 over the sorted relative paths and contents of every model file.

    Each file contributes its path, its size and its bytes (length-prefixed, so no two different
    trees hash alike); a symlink contributes its target text. metadata.json is left out.
    """
    entries: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(model_dir, followlinks=False):
        dirs.sort()
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(model_dir).as_posix()
            if not _excluded(relative):
                entries.append((relative, path))
    digest = hashlib.sha256()
    for relative, path in sorted(entries):
        encoded = relative.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        if path.is_symlink():
            target = os.readlink(path).encode()
            digest.update(b"L" + len(target).to_bytes(8, "big") + target)
            continue
        digest.update(b"F" + path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def write_metadata(model_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``metadata.json`` atomically: a reader sees the old record or the new, never half."""
    model_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=model_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        target = model_dir / METADATA_FILE
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(model_dir)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """The record write_metadata stored; ModelNotFound when there is none."""
    try:
        record = json.loads((model_dir / METADATA_FILE).read_text())
    except FileNotFoundError as exc:
        raise errors.ModelNotFound(f"model metadata not found in {model_dir.name}") from exc
    except (OSError, ValueError) as exc:
        raise errors.JobFailure(f"model metadata is unreadable: {exc}") from exc
    if not isinstance(record, dict):
        raise errors.JobFailure("model metadata is not a JSON object")
    return record


def verify(model_dir: Path, expected_sha256: str) -> None:
    """Raise errors.JobFailure when the model's files are not the ones training wrote."""
    if not model_dir.is_dir():
        raise errors.JobFailure("model files are missing")
    actual = checksum(model_dir)
    if not hmac.compare_digest(actual.encode(), str(expected_sha256).lower().encode()):
        raise errors.JobFailure("model files changed since training (checksum mismatch)")


def remove_model_files(models_dir: Path, model_id: str) -> bool:
    """Delete a model's directory (every attempt's files); False when there was none here."""
    directory = models_dir / model_id
    if not is_valid_model_id(model_id) or not directory.is_dir():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True
