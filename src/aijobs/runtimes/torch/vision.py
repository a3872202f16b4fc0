"""`resnet`, `vgg`, `alexnet`: image classifiers trained on a folder of class folders.

Every image is decoded once (Pillow, in a thread pool), converted to RGB, resized to
`image_size` and kept as one uint8 tensor (on the GPU when there is one and it fits), so the
training loop never waits on files: a batch is an index into that tensor, normalised with the
training set's per-channel mean and standard deviation (optionally shifted a few pixels at
random: `augment`). Inference takes image paths inside the data roots and answers the `top_k`
classes with their probabilities, dropping those under `confidence_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from aijobs import errors
from aijobs.runtimes import datasets, params
from aijobs.runtimes.base import TrainContext, TrainResult
from aijobs.runtimes.torch import common, training, vision_models
from aijobs.runtimes.torch import params as torch_params
from aijobs.runtimes.torch.runtime import META_FILE

FAMILY = "image_classifier"
GPU_PRELOAD_BYTES = 2 * 2**30  # moved to the GPU whole below this size
PREDICT_PARAMS: dict[str, params.Param] = {
    "top_k": params.param(int, 5, params.integer(1, 1_000_000)),
    "confidence_threshold": params.param(float, 0.0, params.number(0, 1)),
}


# ------------------------------------------------------------------------------------- data


def decode(path: Path, size: int, shown: str) -> torch.Tensor:
    """One image as a 3 x size x size uint8 tensor; a clear failure for a bad file."""
    return torch.from_numpy(datasets.decode(path, size, shown)).permute(2, 0, 1)


def preload(items: list[tuple[Path, int]], base: Path, size: int) -> torch.Tensor:
    """Every image, decoded, as one n x 3 x size x size uint8 tensor."""
    out = torch.empty((len(items), 3, size, size), dtype=torch.uint8)

    def put(i: int, image: Any) -> None:
        out[i] = torch.from_numpy(image).permute(2, 0, 1)

    datasets.decode_all(items, base, size, put)
    return out


# ------------------------------------------------------------------------------------- task


class ImageClassification:
    kind = "classification"

    def __init__(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        labels: list[int],
        split: tuple[list[int], list[int]],
        stats: tuple[list[float], list[float]],
        augment: bool,
        device: torch.device,
        num_classes: int,
    ) -> None:
        self.model = model
        keep_on_gpu = device.type == "cuda" and images.numel() <= GPU_PRELOAD_BYTES
        self.images = images.to(device) if keep_on_gpu else images
        self.labels = torch.tensor(labels, dtype=torch.long, device=device)
        self.train_idx = torch.tensor(split[0], dtype=torch.long)
        self.val_idx = torch.tensor(split[1], dtype=torch.long)
        self.n_train, self.n_validation = len(split[0]), len(split[1])
        self.mean = torch.tensor(stats[0], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(stats[1], device=device).view(1, 3, 1, 1)
        self.augment, self.device, self.num_classes = augment, device, num_classes

    def _batch(self, indices: torch.Tensor, shift: torch.Tensor | None) -> training.Batch:
        raw = self.images[indices.to(self.images.device)].to(self.device, non_blocking=True)
        x = (raw.float() / 255.0 - self.mean) / self.std
        if shift is not None:
            x = translate(x, shift)
        return training.Batch(x, self.labels[indices.to(self.device)], len(indices))

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[training.Batch]:
        order = self.train_idx[torch.randperm(self.n_train, generator=generator)]
        size = self.images.shape[-1]
        for start in range(0, self.n_train, batch_size):
            chunk = order[start : start + batch_size]
            if len(chunk) == 1 and start > 0:
                break  # batch norm cannot train on a single example
            shift = None
            if self.augment:
                limit = max(1, size // 8)
                shift = torch.randint(-limit, limit + 1, (len(chunk), 2), generator=generator)
            yield self._batch(chunk, shift)

    def validation_batches(self, batch_size: int) -> Iterator[training.Batch]:
        for start in range(0, self.n_validation, batch_size):
            yield self._batch(self.val_idx[start : start + batch_size], None)

    def logits(self, inputs: Any) -> torch.Tensor:
        out: torch.Tensor = self.model(inputs)
        return out


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved by (dy, dx) pixels, the border filled by reflection."""
    pad = int(shift.abs().max())
    if pad == 0:
        return x
    size = x.shape[-1]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < size else "replicate")
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shift.tolist()):
        out[i] = padded[i, :, pad + dy : pad + dy + size, pad + dx : pad + dx + size]
    return out


def channel_stats(images: torch.Tensor, indices: list[int]) -> tuple[list[float], list[float]]:
    sample = images[torch.tensor(indices[:4096], dtype=torch.long)].float() / 255.0
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


# --------------------------------------------------------------------------------- training


def train(
    model_type: str, data_path: Path, given: dict[str, Any], ctx: TrainContext
) -> TrainResult:
    accepted, defaults = torch_params.spec_for(model_type)
    hp = params.validate(given, accepted, defaults)
    choice = common.select_device(ctx.device)
    classes, items, notes = datasets.find_images(data_path)
    datasets.check_num_classes(hp["num_classes"], classes, notes)
    size = hp["image_size"]
    files = [path for path, _ in items]
    checkpoint = common.Checkpoint(
        ctx.checkpoint_dir, hp, model_type=model_type, data=common.files_signature(files, data_path)
    )
    state = checkpoint.load()
    ctx.report(0.01, {"images": len(items), "classes": len(classes)})

    images = preload(items, data_path, size)
    labels = [label for _, label in items]
    split = datasets.split_indices(len(items), hp["validation_split"], hp["seed"], labels)
    if hp["validation_split"] == 0:
        notes.append("validation_split is 0: metrics are measured on the training data")
    stats = channel_stats(images, split[0])
    architecture = {
        "model_type": model_type,
        "depth": hp.get("depth"),
        "width": hp["width"],
        "image_size": size,
        "num_classes": len(classes),
        "dropout": hp["dropout"],
    }
    common.seed_all(hp["seed"])
    model = vision_models.build(architecture).to(choice.device)
    task = ImageClassification(
        model, images, labels, split, stats, hp["augment"], choice.device, len(classes)
    )
    ctx.report(training.PREPARE_SHARE, {"n_train": task.n_train, "n_validation": task.n_validation})
    try:
        fitted = training.fit(task, hp, ctx, choice.device, checkpoint, state, {})
        model.to("cpu")
        _save(ctx.model_dir, model, classes, architecture, stats, hp, choice)
        info = training.result_info(choice, model, fitted, notes + checkpoint.notes)
    finally:
        del model, task
        common.release(choice.device)
    name = f"{model_type}-{hp['depth']}" if hp.get("depth") else model_type
    info |= {
        "architecture": name,
        "classes": classes,
        "num_classes": len(classes),
        "image_size": size,
        "images": len(items),
    }
    metrics = {**fitted.metrics, "n_train": len(split[0]), "n_validation": len(split[1])}
    return TrainResult(metrics=metrics, info=info)


def _save(
    model_dir: Path,
    model: torch.nn.Module,
    classes: list[str],
    architecture: dict[str, Any],
    stats: tuple[list[float], list[float]],
    hp: dict[str, Any],
    choice: common.DeviceChoice,
) -> None:
    import safetensors.torch

    safetensors.torch.save_model(model, str(model_dir / common.WEIGHTS_FILE))
    common.write_json(
        model_dir / META_FILE,
        {
            "format": 1,
            "runtime": "pytorch",
            "family": FAMILY,
            "model_type": architecture["model_type"],
            "architecture": architecture,
            "classes": classes,
            "mean": stats[0],
            "std": stats[1],
            "hyperparameters": hp,
            "trained_device": choice.device.type,
            "torch_version": torch.__version__,
        },
    )


# -------------------------------------------------------------------------------- inference


def load(model_dir: Path, meta: dict[str, Any]) -> common.LoadedModel:
    architecture, classes = meta.get("architecture"), meta.get("classes")
    if not isinstance(architecture, dict) or not isinstance(classes, list):
        raise errors.JobFailure("model metadata aijobs.json lacks the architecture or classes")
    if architecture.get("num_classes") != len(classes) or len(classes) < 2:
        raise errors.JobFailure("model metadata aijobs.json lists inconsistent classes")
    for key in ("mean", "std"):
        value = meta.get(key)
        if not isinstance(value, list) or len(value) != 3:
            raise errors.JobFailure(f"model metadata aijobs.json has no valid {key!r}")
    try:
        model = vision_models.build(architecture)
    except (KeyError, ValueError, TypeError) as exc:
        raise errors.JobFailure(f"model metadata describes no known network: {exc}") from exc
    common.load_weights(model, model_dir)
    device = common.inference_device(meta)
    model.to(device).eval()
    return common.LoadedModel(FAMILY, model, None, meta, device)


def predict(
    loaded: common.LoadedModel,
    input_data: str,
    parameters: dict[str, Any],
    data_roots: list[Path],
) -> dict[str, Any]:
    kind = loaded.meta.get("model_type", "image model")
    p = params.validate(parameters, PREDICT_PARAMS, what="parameter", context=f" for {kind}")
    if not isinstance(input_data, str):
        raise errors.JobFailure("input_data must be a string: an image path")
    paths = datasets.image_paths(input_data, data_roots)
    meta, device = loaded.meta, loaded.device
    classes: list[str] = meta["classes"]
    size = int(meta["architecture"]["image_size"])
    batch = torch.stack([decode(path, size, shown) for shown, path in paths]).to(device)
    mean = torch.tensor(meta["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], device=device).view(1, 3, 1, 1)
    with torch.inference_mode():
        probs = torch.softmax(loaded.model((batch.float() / 255.0 - mean) / std).float(), -1)
    images = [shown for shown, _ in paths]
    scores = probs.cpu().double().numpy()
    return datasets.ranked(scores, classes, images, p["top_k"], p["confidence_threshold"])
