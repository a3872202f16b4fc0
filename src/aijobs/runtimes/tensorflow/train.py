"""Training for the TensorFlow runtime: device, data, `model.fit` with a progress callback, save.

Every image is decoded once, converted to RGB, resized to the architecture's input size and kept
in one uint8 array (N, size, size, 3); the model rescales pixels itself, so the saved model
takes raw 0..255 images at inference time too.

Imported inside the runtime's `train` only (the worker's training child), after the runtime has
set the environment TensorFlow reads at import (backend, log level).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from aijobs import datapaths, errors
from aijobs.runtimes import datasets
from aijobs.runtimes.base import TrainContext, TrainResult
from aijobs.runtimes.tensorflow import models as tf_models
from aijobs.runtimes.tensorflow import params as tf_params
from aijobs.runtimes.tensorflow.infer import META_FILE, MODEL_FILE

PREPARE_SHARE = 0.05  # progress fraction spent before the first step; training fills to 0.95
TRAIN_SHARE = 0.90
REPORT_EVERY_SECONDS = 1.0
EVAL_BATCH = 64
TRUTHY = ("1", "true", "yes", "on")
MIN_IMAGES_PER_CLASS = 2  # one to train on and one to validate with

Images = npt.NDArray[np.uint8]


def check_counts(
    classes: list[str], items: list[tuple[Path, int]], validation_split: float
) -> None:
    """Enough images per class to train and validate on: a clear failure otherwise."""
    need = MIN_IMAGES_PER_CLASS if validation_split > 0 else 1
    counts = np.bincount([label for _, label in items], minlength=len(classes))
    short = [f"{classes[i]!r} ({int(n)})" for i, n in enumerate(counts) if n < need]
    if short:
        raise errors.JobFailure(
            f"too few images: each class needs at least {need} (one to train on, one to "
            f"validate with); these have fewer: {', '.join(short)}"
        )


def preload(items: list[tuple[Path, int]], base: Path, size: int) -> Images:
    """Every image, decoded, as one (n, size, size, 3) uint8 array."""
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    datasets.decode_all(items, base, size, out.__setitem__)
    return out


@dataclass(frozen=True)
class DeviceChoice:
    name: str  # for tf.device: "/CPU:0" or "/GPU:0"
    description: str  # reported in the result: "cpu" or "/GPU:0 (NVIDIA H100 ...)"
    note: str | None = None


def select_device(requested: str) -> DeviceChoice:
    """The GPU for a GPU job (or a clear failure without one), else the CPU only."""
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "cuda":
        if gpus:
            for gpu in gpus:  # take memory as needed: other jobs may share the card
                tf.config.experimental.set_memory_growth(gpu, True)
            details = tf.config.experimental.get_device_details(gpus[0])
            name = details.get("device_name", "GPU")
            return DeviceChoice("/GPU:0", f"/GPU:0 ({name})")
        if (os.environ.get("AIJOBS_ALLOW_MISSING_GPU") or "").strip().lower() in TRUTHY:
            return DeviceChoice(
                "/CPU:0",
                "cpu",
                "this job asked for a GPU but TensorFlow sees none in this worker; it ran on the "
                "CPU because AIJOBS_ALLOW_MISSING_GPU is set",
            )
        raise errors.JobFailure(
            "this job requires a GPU, but TensorFlow sees no GPU in this worker "
            f"(tensorflow {tf.__version__}; a CUDA build of TensorFlow and a GPU are needed)"
        )
    if requested not in ("cpu", ""):
        raise errors.JobFailure(f"unknown device {requested!r}; expected 'cpu' or 'cuda'")
    if gpus:  # a CPU job must not take GPU memory from the jobs that asked for it
        tf.config.set_visible_devices([], "GPU")
    return DeviceChoice("/CPU:0", "cpu")


def optimizer_for(hp: dict[str, Any], total_steps: int) -> keras.optimizers.Optimizer:
    lr: Any = hp["learning_rate"]
    if hp["lr_schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total_steps))
    decay = hp["weight_decay"]
    if hp["optimizer"] == "sgd":
        return keras.optimizers.SGD(lr, momentum=hp["momentum"], weight_decay=decay)
    if hp["optimizer"] == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=hp["momentum"], weight_decay=decay)
    if hp["optimizer"] == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=0.004 if decay is None else decay)
    return keras.optimizers.Adam(lr, weight_decay=decay)


def evaluate(model: keras.Model, x: Images, y: np.ndarray[Any, Any]) -> dict[str, float]:
    """Held-out loss, accuracy and macro F1; forward passes run eagerly (no second graph to
    trace, which costs more than the passes themselves on a small validation set)."""
    probs = np.concatenate(
        [
            np.asarray(model(x[i : i + EVAL_BATCH], training=False), dtype=np.float64)
            for i in range(0, len(x), EVAL_BATCH)
        ]
    )
    n_classes = probs.shape[1]
    picked = probs[np.arange(len(y)), y]
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())
    predicted = probs.argmax(axis=1)
    confusion = np.bincount(y * n_classes + predicted, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )
    tp = np.diag(confusion).astype(np.float64)
    precision = tp / np.maximum(confusion.sum(axis=0), 1)
    recall = tp / np.maximum(confusion.sum(axis=1), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    present = confusion.sum(axis=1) > 0
    return {
        "val_loss": loss,
        "accuracy": float(tp.sum() / max(len(y), 1)),
        "f1": float(f1[present].mean()) if present.any() else 0.0,
    }


class Progress(keras.callbacks.Callback):  # type: ignore[misc]
    """Reports into the worker's progress channel: about every second while an epoch runs, and
    each epoch's train and validation metrics as history."""

    def __init__(
        self,
        ctx: TrainContext,
        epochs: int,
        steps: int,
        validation: tuple[Images, np.ndarray[Any, Any]],
        batch_size: int,
        x_train: Images,
        seed: int,
    ) -> None:
        super().__init__()
        self.ctx, self.epochs, self.steps = ctx, epochs, steps
        self.validation, self.batch_size = validation, batch_size
        self.x_train, self.n_train, self.seed = x_train, len(x_train), seed
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.samples = 0
        self._started = 0.0
        self._last = time.monotonic()
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch + 1
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if time.monotonic() - self._last < REPORT_EVERY_SECONDS:
            return
        self._last = time.monotonic()
        done = ((self._epoch - 1) * self.steps + batch + 1) / (self.epochs * self.steps)
        metrics: dict[str, Any] = {"epoch": self._epoch, "step": batch + 1}
        metrics["steps_per_epoch"] = self.steps
        if logs and "loss" in logs:
            metrics["train_loss"] = round(float(logs["loss"]), 6)
        self.ctx.report(PREPARE_SHARE + TRAIN_SHARE * min(done, 1.0), metrics)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        elapsed = time.perf_counter() - self._started
        logs = logs or {}
        train_loss = float(logs.get("loss", float("nan")))
        if not math.isfinite(train_loss):
            raise errors.JobFailure(
                f"training diverged: the loss became {train_loss} at epoch {epoch + 1}; "
                "try a lower learning_rate"
            )
        seen = min(self.steps * self.batch_size, self.n_train)
        self.train_seconds += elapsed
        self.samples += seen
        entry: dict[str, Any] = {
            "train_loss": train_loss,
            "train_accuracy": float(logs.get("accuracy", float("nan"))),
        }
        if self.steps * (epoch + 1) < tf_models.RECALIBRATE_BELOW_STEPS:
            tf_models.recalibrate_batch_norm(self.model, self.x_train, self.seed + epoch)
        entry |= evaluate(self.model, *self.validation)
        entry |= {
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "epoch_time": elapsed,
            "samples_per_second": seen / elapsed if elapsed > 0 else None,
        }
        entry = {k: round(v, 6) if isinstance(v, float) else v for k, v in entry.items()}
        self.history.append({"epoch": epoch + 1, **entry})
        self.ctx.report(
            PREPARE_SHARE + TRAIN_SHARE * (epoch + 1) / self.epochs, entry, epoch=epoch + 1
        )


def _dataset(x: Images, y: np.ndarray[Any, Any], batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled each epoch with `seed`; a last batch of one example is dropped (batch norm cannot
    train on a single example)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    drop = len(x) > batch_size and len(x) % batch_size == 1
    return ds.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)


def train(
    model_type: str, data_path: Path, given: dict[str, Any], ctx: TrainContext
) -> TrainResult:
    hp = tf_params.check(model_type, given)
    choice = select_device(ctx.device)
    weights = None
    if hp["pretrained_weights"]:
        try:
            weights = datapaths.resolve_data_path(hp["pretrained_weights"], ctx.data_roots)
        except errors.InvalidDataPath as exc:
            detail = exc.detail.replace("data_path", "hyperparameter 'pretrained_weights'", 1)
            raise errors.JobFailure(detail) from exc
        if not weights.is_file():
            raise errors.JobFailure("hyperparameter 'pretrained_weights' must name a file")
    classes, items, notes = datasets.find_images(data_path)
    datasets.check_num_classes(hp["num_classes"], classes, notes)
    check_counts(classes, items, hp["validation_split"])
    ctx.report(0.01, {"images": len(items), "classes": len(classes)})

    size = hp["image_size"]
    images = preload(items, data_path, size)
    labels = np.array([label for _, label in items], dtype=np.int32)
    train_idx, val_idx = datasets.split_indices(
        len(labels), hp["validation_split"], hp["seed"], labels.tolist()
    )
    if hp["validation_split"] == 0:
        notes.append("validation_split is 0: metrics are measured on the training data")
    x_train, y_train = images[train_idx], labels[train_idx]
    x_val, y_val = images[val_idx], labels[val_idx]

    architecture = {
        "model_type": model_type,
        "name": tf_params.architecture_name(model_type, hp),
        "image_size": size,
        "num_classes": len(classes),
        "dropout_rate": hp["dropout_rate"],
        "alpha": hp.get("alpha", 1.0),
    }
    keras.utils.set_random_seed(hp["seed"])
    batch_size = hp["batch_size"]
    dataset = _dataset(x_train, y_train, batch_size, hp["seed"])
    steps = max(1, int(dataset.cardinality().numpy()))
    with tf.device(choice.name):
        model = tf_models.build(architecture, weights)
        model.compile(
            optimizer=optimizer_for(hp, steps * hp["epochs"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=False,  # XLA compiles these graphs for minutes on a CPU
        )
        progress = Progress(
            ctx, hp["epochs"], steps, (x_val, y_val), batch_size, x_train, hp["seed"]
        )
        ctx.report(PREPARE_SHARE, {"n_train": len(x_train), "n_validation": len(x_val)})
        model.fit(dataset, epochs=hp["epochs"], verbose=0, shuffle=False, callbacks=[progress])
    model.save(ctx.model_dir / MODEL_FILE)
    _write_meta(ctx.model_dir, architecture, classes, hp, choice)

    final = {k: v for k, v in progress.history[-1].items() if k not in ("epoch", "learning_rate")}
    final.pop("epoch_time", None)
    speed = progress.samples / progress.train_seconds if progress.train_seconds > 0 else None
    final["samples_per_second"] = round(speed, 3) if speed else None
    metrics = {**final, "n_train": len(x_train), "n_validation": len(x_val)}
    all_notes = ([choice.note] if choice.note else []) + notes
    info: dict[str, Any] = {
        "device": choice.description,
        "architecture": architecture["name"],
        "parameters": int(model.count_params()),
        "epochs_trained": hp["epochs"],
        "classes": classes,
        "num_classes": len(classes),
        "image_size": size,
        "images": len(items),
        "keras_version": keras.__version__,
    }
    if weights is not None:
        info["pretrained_weights"] = hp["pretrained_weights"]
    if all_notes:
        info["notes"] = all_notes
    return TrainResult(metrics=metrics, info=info)


def _write_meta(
    model_dir: Path,
    architecture: dict[str, Any],
    classes: list[str],
    hp: dict[str, Any],
    choice: DeviceChoice,
) -> None:
    import json

    meta = {
        "format": 1,
        "runtime": "tensorflow",
        "model_type": architecture["model_type"],
        "architecture": architecture,
        "classes": classes,
        "hyperparameters": hp,
        "trained_device": "gpu" if choice.name.startswith("/GPU") else "cpu",
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
