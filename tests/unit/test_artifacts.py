"""The model store helpers: ids, directories, checksum, atomic metadata, verification."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from aijobs import artifacts, errors


def _model(tmp_path: Path) -> Path:
    model_dir = tmp_path / "m" / "attempt-1"
    (model_dir / "sub").mkdir(parents=True)
    (model_dir / "model.skops").write_bytes(b"weights")
    (model_dir / "meta.json").write_text('{"task": "classification"}')
    (model_dir / "sub" / "vocab.txt").write_text("a\nb\n")
    return model_dir


def test_model_id_uses_the_job_uuid() -> None:
    job_id = "job_12345678-9abc-4def-8123-456789abcdef"
    assert artifacts.model_id_for("random_forest", job_id) == "random_forest_model_123456789abc"
    other = f"job_{uuid.uuid4()}"
    assert artifacts.model_id_for("bert", other) == f"bert_model_{other[4:].replace('-', '')[:12]}"


@pytest.mark.parametrize("model_type", ["../../etc", "a/b", "x\x00y", "", "Ünïcode model", "."])
def test_model_id_is_a_safe_directory_name_whatever_the_model_type(model_type: str) -> None:
    model_id = artifacts.model_id_for(model_type, f"job_{uuid.uuid4()}")
    assert artifacts.is_valid_model_id(model_id)
    assert "/" not in model_id
    assert ".." not in model_id
    assert "\x00" not in model_id


def test_model_id_for_an_unusual_job_id_is_still_stable() -> None:
    first = artifacts.model_id_for("svm", "not-a-uuid")
    assert first == artifacts.model_id_for("svm", "not-a-uuid")
    assert artifacts.is_valid_model_id(first)


def test_attempt_model_dir(tmp_path: Path) -> None:
    assert artifacts.attempt_model_dir(tmp_path, "svm_model_0123456789ab", 2) == (
        tmp_path / "svm_model_0123456789ab" / "attempt-2"
    )


@pytest.mark.parametrize("model_id", ["../x", "a/b", "..", "", ".hidden", "x" * 200])
def test_attempt_model_dir_refuses_ids_that_leave_the_store(tmp_path: Path, model_id: str) -> None:
    with pytest.raises(errors.ModelNotFound):
        artifacts.attempt_model_dir(tmp_path, model_id, 1)


def test_checksum_is_stable_and_sees_every_change(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    digest = artifacts.checksum(model_dir)
    assert digest == artifacts.checksum(model_dir)
    assert len(digest) == 64

    (model_dir / "sub" / "vocab.txt").write_text("a\nc\n")  # same size, other bytes
    changed = artifacts.checksum(model_dir)
    assert changed != digest

    (model_dir / "sub" / "vocab.txt").rename(model_dir / "sub" / "vocab2.txt")
    renamed = artifacts.checksum(model_dir)
    assert renamed != changed

    (model_dir / "extra.bin").write_bytes(b"")
    assert artifacts.checksum(model_dir) != renamed


def test_checksum_does_not_depend_on_where_the_model_lives(tmp_path: Path) -> None:
    first = _model(tmp_path / "one")
    second = _model(tmp_path / "two")
    assert artifacts.checksum(first) == artifacts.checksum(second)


def test_checksum_tells_file_boundaries_apart(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_bytes(b"12")
    (a / "y").write_bytes(b"3")
    (b / "x").write_bytes(b"1")
    (b / "y").write_bytes(b"23")
    assert artifacts.checksum(a) != artifacts.checksum(b)


def test_metadata_is_written_atomically_and_left_out_of_the_checksum(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    digest = artifacts.checksum(model_dir)
    record = {"model_id": "svm_model_0123456789ab", "sha256": digest, "metrics": {"r2": 0.5}}
    path = artifacts.write_metadata(model_dir, record)
    assert path == model_dir / "metadata.json"
    assert json.loads(path.read_text()) == record
    assert artifacts.read_metadata(model_dir) == record
    assert artifacts.checksum(model_dir) == digest

    artifacts.write_metadata(model_dir, {**record, "status": "updated"})
    assert artifacts.read_metadata(model_dir)["status"] == "updated"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "meta.json",
        "metadata.json",
        "model.skops",
        "sub",
    ]  # no temporary file left behind


def test_metadata_write_failure_keeps_the_old_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = _model(tmp_path)
    artifacts.write_metadata(model_dir, {"v": 1})

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        artifacts.write_metadata(model_dir, {"v": 2})
    monkeypatch.undo()
    assert artifacts.read_metadata(model_dir) == {"v": 1}
    assert not [p for p in model_dir.iterdir() if p.name.endswith(".tmp")]


def test_read_metadata_of_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelNotFound):
        artifacts.read_metadata(tmp_path)


def test_verify(tmp_path: Path) -> None:
    model_dir = _model(tmp_path)
    digest = artifacts.checksum(model_dir)
    artifacts.write_metadata(model_dir, {"sha256": digest})
    artifacts.verify(model_dir, digest)
    artifacts.verify(model_dir, digest.upper())

    (model_dir / "model.skops").write_bytes(b"tampered")
    with pytest.raises(errors.JobFailure, match=r"changed since training \(checksum mismatch\)"):
        artifacts.verify(model_dir, digest)

    with pytest.raises(errors.JobFailure, match="missing"):
        artifacts.verify(tmp_path / "nowhere", digest)


def test_publish_moves_a_complete_model_into_place(tmp_path: Path) -> None:
    final = tmp_path / "models" / "svm_model_0123456789ab" / "attempt-1"
    staging = artifacts.staging_dir(final)
    assert staging.parent == final.parent
    assert staging.name.startswith(".")  # never taken for a model directory
    written = _model(tmp_path / "w")
    staging.parent.mkdir(parents=True)
    written.rename(staging)
    digest = artifacts.checksum(staging)
    (final / "stale").mkdir(parents=True)  # left by an earlier try of this attempt
    artifacts.publish(staging, final, {"sha256": digest})
    assert not staging.exists()
    assert sorted(p.name for p in final.iterdir()) == [
        "meta.json",
        "metadata.json",
        "model.skops",
        "sub",
    ]
    assert (final / "model.skops").read_bytes() == b"weights"
    assert artifacts.read_metadata(final) == {"sha256": digest}
    artifacts.verify(final, digest)
