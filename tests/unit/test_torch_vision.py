"""`resnet`, `vgg`, `alexnet`: small networks learn the demo digits, classify an image path
inside the data roots, and fail clearly on bad folders, images and paths."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the unit tier runs where only scikit-learn is installed

import torch

from aijobs import errors
from aijobs.runtimes.base import TrainResult
from aijobs.runtimes.torch import training, vision_models
from aijobs.runtimes.torch.runtime import TorchRuntime
from aijobs.runtimes.torch.vision import ImageClassification, translate
from tests.runtime_support import ctx_for

pytestmark = pytest.mark.torch

SMALL = {"width": 8, "image_size": 16, "learning_rate": 0.003}
IMAGE = "/data/image_classification/digit_3/digit_3_004.png"


def train(model_type: str, data_path: Path, hp: dict[str, Any], tmp: Path, data: Path) -> Any:
    return TorchRuntime().train(model_type, data_path, hp, ctx_for(tmp, data))


@pytest.fixture(scope="module")
def resnet(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path]:
    tmp = tmp_path_factory.mktemp("resnet")
    hp = {**SMALL, "epochs": 6, "num_classes": 1000}  # the spec's 1000, on 10 class folders
    return train("resnet", data / "image_classification", hp, tmp, data), tmp / "model"


@pytest.fixture(scope="module")
def model(resnet: tuple[TrainResult, Path]) -> Any:
    return TorchRuntime().load(resnet[1])


def classify(model: Any, image: str, data: Path, **parameters: Any) -> dict[str, Any]:
    return TorchRuntime().predict(model, image, parameters, [data])


# ---------------------------------------------------------------------------------- training


def test_resnet_learns_the_digits(resnet: tuple[TrainResult, Path]) -> None:
    result = resnet[0]
    assert result.metrics["accuracy"] > 0.6, result.metrics  # chance is 0.1
    assert result.metrics["n_train"] == 240
    assert result.metrics["n_validation"] == 60
    info = result.info
    assert info["architecture"] == "resnet-18"
    assert info["num_classes"] == 10
    assert info["classes"][:2] == ["digit_0", "digit_1"]
    assert info["images"] == 300
    assert any("num_classes 1000 was given but the data has 10 classes" in n for n in info["notes"])
    assert {p.name for p in resnet[1].iterdir()} == {"model.safetensors", "aijobs.json"}


@pytest.mark.parametrize("model_type", ["vgg", "alexnet"])
def test_vgg_and_alexnet_learn(model_type: str, data: Path, tmp_path: Path) -> None:
    result = train(
        model_type, data / "image_classification", {**SMALL, "epochs": 4}, tmp_path, data
    )
    assert result.metrics["accuracy"] > 0.3, result.metrics  # chance is 0.1
    assert result.info["architecture"] == ("vgg-11" if model_type == "vgg" else "alexnet")
    loaded = TorchRuntime().load(tmp_path / "model")
    assert classify(loaded, IMAGE, data, top_k=2)["n_rows"] == 1


def test_cifar_folder_with_augmentation(data: Path, tmp_path: Path) -> None:
    hp = {**SMALL, "epochs": 1, "augment": True, "depth": 34, "batch_size": 16}
    result = train("resnet", data / "cifar10", hp, tmp_path, data)
    assert result.info["classes"][0] == "airplane"
    assert result.info["architecture"] == "resnet-34"


@pytest.mark.parametrize(
    ("model_type", "depth", "size"),
    [("resnet", 50, 32), ("resnet", 34, 8), ("resnet", 18, 128), ("vgg", 19, 32), ("vgg", 13, 8),
     ("alexnet", None, 8), ("alexnet", None, 128)],
)  # fmt: skip
def test_every_architecture_gives_one_logit_per_class(
    model_type: str, depth: int | None, size: int
) -> None:
    net = vision_models.build(
        {"model_type": model_type, "depth": depth, "width": 4, "image_size": size,
         "num_classes": 7, "dropout": 0.1}
    )  # fmt: skip
    net.eval()
    with torch.inference_mode():
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 7)


def test_translate_moves_pixels() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    moved = translate(x, torch.tensor([[1, 0]]))
    assert torch.equal(moved[0, 0, 1:], x[0, 0, :3]) or torch.equal(moved[0, 0, :3], x[0, 0, 1:])
    assert torch.equal(translate(x, torch.tensor([[0, 0]])), x)


def test_batch_norm_statistics_are_set_from_the_current_weights() -> None:
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    norm = torch.nn.BatchNorm2d(3)
    stats = ([0.5] * 3, [0.25] * 3)
    cpu = torch.device("cpu")
    task = ImageClassification(
        norm, images, [0, 1] * 5, (list(range(8)), [8, 9]), stats, False, cpu, 2
    )
    assert training.recalibrate_batch_norm(task, 4, cpu, amp=False)
    inputs = (images[:8].float() / 255.0 - 0.5) / 0.25  # the training images, as the net sees them
    assert norm.running_mean is not None
    assert torch.allclose(norm.running_mean, inputs.mean(dim=(0, 2, 3)), atol=1e-5)
    assert norm.momentum == 0.1  # as it was, for training on
    task.model = torch.nn.Linear(2, 2)
    assert not training.recalibrate_batch_norm(task, 4, cpu, amp=False)


# --------------------------------------------------------------------------------- inference


def test_top_k_classes_with_probabilities(model: Any, data: Path) -> None:
    out = classify(model, IMAGE, data, top_k=3)
    ranked = out["top_k"][0]
    assert len(ranked) == 3
    assert out["label"] == ranked[0]["label"] == "digit_3"
    probs = [r["probability"] for r in ranked]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) <= 1 + 1e-6
    assert out["confidence"] == probs[0]
    assert out["images"] == [IMAGE]


def test_confidence_threshold_drops_unlikely_classes(model: Any, data: Path) -> None:
    out = classify(model, IMAGE, data, top_k=5, confidence_threshold=0.2)
    assert 1 <= len(out["top_k"][0]) < 5
    assert all(r["probability"] >= 0.2 for r in out["top_k"][0])
    nothing = classify(model, IMAGE, data, confidence_threshold=1.0)
    assert nothing["top_k"] == [[]]
    assert nothing["predictions"] == [None]


def test_several_images_one_per_line(model: Any, data: Path) -> None:
    paths = [f"/data/image_classification/digit_{d}/digit_{d}_001.png" for d in (0, 1, 7)]
    out = classify(model, "\n".join(paths), data, top_k=1)
    assert out["n_rows"] == 3
    assert len(out["predictions"]) == 3
    assert "label" not in out
    assert sum(p == f"digit_{d}" for p, d in zip(out["predictions"], (0, 1, 7), strict=True)) >= 2


def test_a_jpeg_of_another_size_is_resized(model: Any, data: Path) -> None:
    from PIL import Image

    jpeg = data / "upload.jpg"
    Image.open(data / "image_classification/digit_3/digit_3_004.png").resize((64, 48)).save(jpeg)
    assert classify(model, str(jpeg), data)["top_k"][0]


@pytest.mark.parametrize(
    ("image", "parameters", "message"),
    [
        ("/etc/passwd", {}, "image path '/etc/passwd' is outside the data roots"),
        ("../../etc/hosts", {}, "outside the data roots"),
        ("/data/image_classification/nope.png", {}, "does not exist"),
        ("/data/image_classification", {}, "is not a file"),
        ("", {}, "input_data is empty"),
        ("/data/tabular_data.csv", {}, "cannot be read"),
        (IMAGE, {"top_k": "5"}, "'top_k' must be an integer"),
        (IMAGE, {"top_k": 0}, "'top_k' must be an integer between 1 and"),
        (IMAGE, {"confidence_threshold": 1.5}, "'confidence_threshold' must be a number in [0, 1]"),
        (IMAGE, {"temperature": 0.7}, "unknown parameter for resnet: temperature"),
    ],
)
def test_bad_inference_input_fails_clearly(
    model: Any, data: Path, image: str, parameters: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        classify(model, image, data, **parameters)
    assert message in caught.value.detail


# -------------------------------------------------------------------------------- bad input


def copy_classes(data: Path, target: Path, classes: list[str]) -> Path:
    for name in classes:
        shutil.copytree(data / "image_classification" / name, target / name)
    return target


def test_one_class_folder_fails(data: Path, tmp_path: Path) -> None:
    folder = copy_classes(data, tmp_path / "one", ["digit_0"])
    (folder / "empty_class").mkdir()
    with pytest.raises(errors.JobFailure) as caught:
        train("resnet", folder, SMALL, tmp_path / "run", data)
    assert "at least two class folders with images" in caught.value.detail
    assert "found 1 ('digit_0')" in caught.value.detail


def test_a_corrupt_image_fails_naming_it(data: Path, tmp_path: Path) -> None:
    folder = copy_classes(data, tmp_path / "two", ["digit_0", "digit_1"])
    (folder / "digit_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(errors.JobFailure) as caught:
        train("alexnet", folder, SMALL, tmp_path / "run", data)
    assert "image 'digit_1/broken.png' cannot be read" in caught.value.detail


def test_a_truncated_image_fails(data: Path, tmp_path: Path) -> None:
    folder = copy_classes(data, tmp_path / "two", ["digit_0", "digit_1"])
    whole = (folder / "digit_0" / "digit_0_000.png").read_bytes()
    (folder / "digit_0" / "digit_0_000.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(errors.JobFailure, match=r"digit_0/digit_0_000\.png' cannot be read"):
        train("vgg", folder, SMALL, tmp_path / "run", data)


def test_empty_class_folders_are_skipped_with_a_note(data: Path, tmp_path: Path) -> None:
    folder = copy_classes(data, tmp_path / "two", ["digit_0", "digit_1"])
    (folder / "digit_9").mkdir()
    (folder / "digit_1" / "readme.txt").write_text("not an image")
    result = train("resnet", folder, {**SMALL, "epochs": 1}, tmp_path / "run", data)
    assert result.info["classes"] == ["digit_0", "digit_1"]
    assert "skipped class folders with no images: digit_9" in result.info["notes"]


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"num_classes": 5}, "'num_classes' is 5, but the data has 10 classes"),
        ({"image_size": "32"}, "'image_size' must be an integer"),
        ({"depth": 101}, "'depth' must be one of 18, 34, 50"),
        ({"max_length": 128}, "unknown hyperparameter: max_length"),
    ],
)
def test_bad_hyperparameters_fail_clearly(
    data: Path, tmp_path: Path, hp: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.JobFailure) as caught:
        train("resnet", data / "image_classification", hp, tmp_path, data)
    assert message in caught.value.detail


def test_a_file_is_not_an_image_folder(data: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.JobFailure, match="is not a directory; image models need a folder"):
        train("resnet", data / "tabular_data.csv", SMALL, tmp_path, data)
