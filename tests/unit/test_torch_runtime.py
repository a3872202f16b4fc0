"""The PyTorch runtime as a plugin: discovered, light to import, resumes from its checkpoints,
picks the device the job asked for, and never unpickles a model or checkpoint file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the unit tier runs where only scikit-learn is installed

import torch

from aijobs import errors
from aijobs.runtimes import base, datasets
from aijobs.runtimes.torch import common, training
from aijobs.runtimes.torch.runtime import TorchRuntime
from tests.runtime_support import FakeContext, ctx_for

pytestmark = pytest.mark.torch

TINY_BERT = {
    "epochs": 2,
    "hidden_size": 32,
    "num_layers": 1,
    "max_length": 32,
    "batch_size": 16,
    "dropout": 0.2,  # randomness that a resumed run must restore to match an uninterrupted one
    "checkpoint_every_seconds": 0,  # after every epoch: the default waits a minute
}


class Stopped(Exception):
    """Stands in for the worker dying right after an epoch."""


@dataclass
class StopAfterEpoch(FakeContext):
    stop_after: int = 1

    def report(
        self, fraction: float, metrics: dict[str, Any] | None = None, *, epoch: int | None = None
    ) -> None:
        super().report(fraction, metrics, epoch=epoch)
        if epoch == self.stop_after:
            raise Stopped


# ------------------------------------------------------------------------------- the plugin


def test_discovered_as_the_pytorch_plugin() -> None:
    runtime = base.discover()["pytorch"]
    assert isinstance(runtime, TorchRuntime)
    assert isinstance(runtime, base.Runtime)
    assert runtime.framework == "pytorch"
    assert runtime.model_types == {"bert", "transformer", "gpt", "resnet", "vgg", "alexnet"}
    assert runtime.missing() is None
    assert runtime.framework_version() == torch.__version__


def test_importing_the_plugin_stays_light() -> None:
    code = (
        "import sys, aijobs.runtimes.torch.runtime as m; r = m.TorchRuntime();"
        "r.missing(); r.framework_version();"
        "heavy = [n for n in ('torch', 'transformers', 'tokenizers', 'PIL', 'numpy')"
        " if n in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hyperparameters_are_checked_before_any_data_is_read(tmp_path: Path) -> None:
    ctx = FakeContext(model_dir=tmp_path)
    with pytest.raises(errors.JobFailure, match="'epochs' must be an integer"):
        TorchRuntime().train("bert", tmp_path / "missing.csv", {"epochs": "3"}, ctx)


def test_a_model_type_it_does_not_train(tmp_path: Path) -> None:
    with pytest.raises(errors.JobFailure, match="cannot train 'svm'"):
        TorchRuntime().train("svm", tmp_path, {}, FakeContext(model_dir=tmp_path))


# ----------------------------------------------------------------------------- checkpoints


def test_a_stopped_job_resumes_from_its_last_epoch(data: Path, tmp_path: Path) -> None:
    csv = data / "training.csv"
    checkpoint = tmp_path / "job-checkpoint"
    first = StopAfterEpoch(
        model_dir=tmp_path / "m1", checkpoint_dir=checkpoint, data_roots=[data], stop_after=1
    )
    first.model_dir.mkdir()
    checkpoint.mkdir()
    with pytest.raises(Stopped):
        TorchRuntime().train("bert", csv, dict(TINY_BERT), first)
    assert (checkpoint / common.CHECKPOINT_FILE).is_file()

    second = ctx_for(tmp_path / "attempt-2", data, checkpoint, attempt=2)
    resumed = TorchRuntime().train("bert", csv, dict(TINY_BERT), second)
    assert resumed.info["resumed_from_epoch"] == 1
    assert resumed.info["epochs_trained"] == 1
    epochs = [e for _, _, e in second.reports if e is not None]
    assert epochs == [1, 2]  # epoch 1 replayed into the new attempt's history, then epoch 2
    assert any(m == {"resumed_from_epoch": 1} for _, m, _ in second.reports)

    # exactly what an uninterrupted run gives: model, optimizer and RNG states were restored
    straight = TorchRuntime().train("bert", csv, dict(TINY_BERT), ctx_for(tmp_path / "s", data))
    assert "resumed_from_epoch" not in straight.info
    assert resumed.metrics["val_loss"] == straight.metrics["val_loss"]
    assert resumed.metrics["train_loss"] == straight.metrics["train_loss"]


def test_a_finished_checkpoint_only_saves_the_model(data: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck"
    hp = {**TINY_BERT, "epochs": 1}
    TorchRuntime().train(
        "bert", data / "training.csv", hp, ctx_for(tmp_path / "a", data, checkpoint)
    )
    again = ctx_for(tmp_path / "b", data, checkpoint)
    result = TorchRuntime().train("bert", data / "training.csv", hp, again)
    assert result.info["resumed_from_epoch"] == 1
    assert result.info["epochs_trained"] == 0
    assert (again.model_dir / "model.safetensors").is_file()
    assert result.metrics["accuracy"] >= 0


def test_a_checkpoint_from_other_hyperparameters_is_ignored(data: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck"
    hp = {**TINY_BERT, "epochs": 1}
    TorchRuntime().train(
        "bert", data / "training.csv", hp, ctx_for(tmp_path / "a", data, checkpoint)
    )
    changed = {**hp, "learning_rate": 0.002}
    result = TorchRuntime().train(
        "bert", data / "training.csv", changed, ctx_for(tmp_path / "b", data, checkpoint)
    )
    assert "resumed_from_epoch" not in result.info
    assert result.info["epochs_trained"] == 1
    assert any("different configuration" in n for n in result.info["notes"])


def test_checkpoints_wait_their_interval(data: Path, tmp_path: Path) -> None:
    """The default interval (a minute) is longer than this job: no epoch is saved; an interval
    of zero saves after each one."""
    csv = data / "training.csv"
    hp = {k: v for k, v in TINY_BERT.items() if k != "checkpoint_every_seconds"} | {"epochs": 1}
    default = ctx_for(tmp_path / "default", data)
    TorchRuntime().train("bert", csv, hp, default)
    assert not (default.checkpoint_dir / common.CHECKPOINT_FILE).exists()
    every_epoch = ctx_for(tmp_path / "zero", data)
    TorchRuntime().train("bert", csv, hp | {"checkpoint_every_seconds": 0}, every_epoch)
    assert (every_epoch.checkpoint_dir / common.CHECKPOINT_FILE).is_file()


def test_a_checkpoint_survives_a_changed_interval(data: Path, tmp_path: Path) -> None:
    checkpoint, hp = tmp_path / "ck", {**TINY_BERT, "epochs": 1}
    TorchRuntime().train(
        "bert", data / "training.csv", hp, ctx_for(tmp_path / "a", data, checkpoint)
    )
    later = {**hp, "checkpoint_every_seconds": 600}
    again = TorchRuntime().train(
        "bert", data / "training.csv", later, ctx_for(tmp_path / "b", data, checkpoint)
    )
    assert again.info["resumed_from_epoch"] == 1


def test_without_a_checkpoint_directory_it_still_trains(data: Path, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    ctx = FakeContext(model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "absent")
    result = TorchRuntime().train("bert", data / "training.csv", {**TINY_BERT, "epochs": 1}, ctx)
    assert result.info["epochs_trained"] == 1
    assert not (tmp_path / "absent").exists()


# ------------------------------------------------------------------------- no pickle, ever

MARKER_CODE = "import pathlib; pathlib.Path({path!r}).write_text('pwned')"


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (MARKER_CODE.format(path=str(self.marker)),))


def test_a_pickled_checkpoint_is_refused_not_run(data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "ck"
    checkpoint.mkdir()
    torch.save({"format": 1, "payload": Exploit(marker)}, checkpoint / common.CHECKPOINT_FILE)
    result = TorchRuntime().train(
        "bert", data / "training.csv", {**TINY_BERT, "epochs": 1},
        ctx_for(tmp_path / "run", data, checkpoint),
    )  # fmt: skip
    assert not marker.exists()
    assert any("could not be read safely" in n for n in result.info["notes"])


@pytest.fixture(scope="module")
def image_model(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("vision")
    hp = {"epochs": 1, "width": 4, "image_size": 8}
    TorchRuntime().train("alexnet", data / "image_classification", hp, ctx_for(tmp, data))
    return tmp / "model"


def test_a_pickle_in_place_of_the_weights_is_refused_not_run(
    image_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(image_model, copy)
    marker = tmp_path / "marker"
    torch.save({"weights": Exploit(marker)}, copy / "model.safetensors")
    with pytest.raises(errors.JobFailure, match=r"model\.safetensors is not valid for this model"):
        TorchRuntime().load(copy)
    assert not marker.exists()


def test_weights_of_another_shape_are_refused(image_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(image_model, copy)
    meta = (copy / "aijobs.json").read_text().replace('"width": 4', '"width": 8')
    (copy / "aijobs.json").write_text(meta)
    with pytest.raises(errors.JobFailure, match="not valid for this model"):
        TorchRuntime().load(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "aijobs.json").unlink(), "aijobs.json is missing or unreadable"),
        (lambda d: (d / "aijobs.json").write_text("[]"), "not from the pytorch runtime"),
        (
            lambda d: (d / "aijobs.json").write_text('{"runtime": "pytorch", "family": "x"}'),
            "not from the pytorch runtime",
        ),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    ],
)
def test_broken_model_directories_fail_clearly(
    image_model: Path, tmp_path: Path, change: Any, message: str
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(image_model, copy)
    change(copy)
    with pytest.raises(errors.JobFailure, match=message):
        TorchRuntime().load(copy)


def test_predict_refuses_foreign_models() -> None:
    with pytest.raises(errors.JobFailure, match="not a model loaded by the pytorch runtime"):
        TorchRuntime().predict(object(), "x", {}, [])


# ---------------------------------------------------------------------------------- device

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@needs_no_cuda
def test_a_gpu_job_without_cuda_fails_clearly(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIJOBS_ALLOW_MISSING_GPU", raising=False)
    ctx = ctx_for(tmp_path, data, device="cuda")
    with pytest.raises(errors.JobFailure) as caught:
        TorchRuntime().train("bert", data / "training.csv", dict(TINY_BERT), ctx)
    assert caught.value.detail == (
        "this job requires a GPU, but CUDA is not available to this worker"
    )


@needs_no_cuda
def test_allow_missing_gpu_runs_on_the_cpu_and_says_so(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIJOBS_ALLOW_MISSING_GPU", "true")
    ctx = ctx_for(tmp_path, data, device="cuda")
    result = TorchRuntime().train("gpt", data / "text_generation", {"epochs": 1}, ctx)
    assert result.info["device"] == "cpu"
    assert "CUDA is not available" in result.info["notes"][0]


def test_device_choice() -> None:
    assert common.select_device("cpu").description == "cpu"
    with pytest.raises(errors.JobFailure, match="unknown device 'tpu'"):
        common.select_device("tpu")
    assert common.truthy("Yes")
    assert not common.truthy("0")


def test_the_hub_is_never_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    common.offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_split_is_stratified_and_seeded() -> None:
    labels = [0] * 10 + [1] * 30
    train, val = datasets.split_indices(40, 0.25, 1, labels)
    assert sorted(train + val) == list(range(40))
    assert sum(labels[i] for i in val) == 8
    assert len(val) == 10
    assert datasets.split_indices(40, 0.25, 1, labels) == (train, val)
    assert datasets.split_indices(40, 0.25, 2, labels) != (train, val)
    everything, same = datasets.split_indices(5, 0.0, 1)
    assert sorted(everything) == sorted(same) == list(range(5))


def test_learning_rate_schedules() -> None:
    hp = {"learning_rate": 1.0, "warmup_ratio": 0.1, "lr_schedule": "linear"}
    rates = [training.learning_rate_at(s, 100, hp) for s in range(100)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(1.0)
    assert rates[-1] < 0.02
    assert rates == sorted(rates[:10]) + rates[10:]
    cosine = {"learning_rate": 1.0, "warmup_ratio": 0.0, "lr_schedule": "cosine"}
    assert training.learning_rate_at(50, 100, cosine) == pytest.approx(0.5)
    constant = {"learning_rate": 0.3, "warmup_ratio": 0.0, "lr_schedule": "constant"}
    assert training.learning_rate_at(99, 100, constant) == 0.3
