from __future__ import annotations

import shutil

import pytest

from aijobs.worker import preflight


def test_gpu_devices_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert preflight.gpu_devices() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert preflight.gpu_devices() == []


def test_gpu_devices_without_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _: None)
    assert preflight.gpu_devices() == []


def test_problems_name_each_reason() -> None:
    found = preflight.problems(["nope", "pytorch-2.1-gpu"], allow_missing_gpu=False, runtimes={})
    assert any("unknown queue 'nope'" in p for p in found)
    assert any("needs the pytorch runtime" in p for p in found)
