"""The training loop every PyTorch model type shares: batches in, loss, optimizer and learning
rate schedule, a checkpoint and a progress report after each epoch, held-out metrics at the end.

Imported only inside the runtime's methods (the worker's child processes): it imports torch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from aijobs import errors
from aijobs.runtimes.base import TrainContext
from aijobs.runtimes.torch.common import Checkpoint, DeviceChoice, autocast, parameter_count

PREPARE_SHARE = 0.05  # progress fraction spent before the first step; training fills to 0.95
TRAIN_SHARE = 0.90
REPORT_EVERY_SECONDS = 1.0


@dataclass
class Batch:
    inputs: Any  # a tensor, or a dict of tensors, on the training device
    targets: torch.Tensor  # class indices, or the token ids of a language model
    size: int  # examples in the batch


class Task(Protocol):
    """A model and its data, as the loop sees them."""

    kind: str  # "classification" or "language_model"
    model: torch.nn.Module
    n_train: int
    n_validation: int
    num_classes: int

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]: ...

    def validation_batches(self, batch_size: int) -> Iterator[Batch]: ...

    def logits(self, inputs: Any) -> torch.Tensor: ...


@dataclass
class FitResult:
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    epochs_run: int  # epochs trained by this attempt (0 when a checkpoint already held them all)
    resumed_from_epoch: int | None
    train_seconds: float
    samples_per_second: float | None
    notes: list[str] = field(default_factory=list)


def _loss(task: Task, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, int]:
    """Mean loss over the batch and how many predictions it averages."""
    if task.kind == "language_model":
        vocab = logits.shape[-1]
        shifted = logits[:, :-1, :].reshape(-1, vocab).float()
        targets = batch.targets[:, 1:].reshape(-1)
        return F.cross_entropy(shifted, targets), targets.numel()
    return F.cross_entropy(logits.float(), batch.targets), batch.size


def _optimizer(model: torch.nn.Module, hp: dict[str, Any]) -> torch.optim.Optimizer:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": hp["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = hp["learning_rate"]
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=hp["momentum"])
    if hp["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def learning_rate_at(step: int, total: int, hp: dict[str, Any]) -> float:
    base: float = hp["learning_rate"]
    warmup = int(total * hp["warmup_ratio"])
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if hp["lr_schedule"] == "constant" or total <= warmup:
        return base
    progress = (step - warmup) / max(1, total - warmup)
    if hp["lr_schedule"] == "linear":
        return base * max(0.0, 1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# Below this many steps, batch norm's running averages (momentum 0.1) still lag far behind the
# weights, and a model that fits its training data scores near chance on held-out data: set them
# from the current weights before evaluating, as the TensorFlow runtime does.
RECALIBRATE_BELOW_STEPS = 500


def recalibrate_batch_norm(task: Task, batch_size: int, device: torch.device, amp: bool) -> bool:
    """Batch norm's running statistics set to their average over the training set, computed with
    the current weights; False when the model has no batch norm."""
    norms = [m for m in task.model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    if not norms:
        return False
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below
    try:
        # Its own generator: the training order (and so a resumed job) is unchanged.
        batches = task.train_batches(batch_size, torch.Generator().manual_seed(0))
        with torch.no_grad(), autocast(device, amp):
            for batch in batches:
                task.logits(batch.inputs)
    finally:
        for norm, momentum in zip(norms, saved, strict=True):
            norm.momentum = momentum
    return True


def _held_out(
    task: Task, batch_size: int, device: torch.device, amp: bool, steps: int
) -> dict[str, float]:
    """The end of an epoch's evaluation, batch norm recalibrated first while steps are few."""
    if steps < RECALIBRATE_BELOW_STEPS:
        recalibrate_batch_norm(task, batch_size, device, amp)
    return evaluate(task, batch_size, device, amp)


def evaluate(task: Task, batch_size: int, device: torch.device, amp: bool) -> dict[str, float]:
    """Held-out loss and accuracy + macro F1 (classifiers) or perplexity (language models)."""
    task.model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    count = 0
    confusion = torch.zeros(
        (task.num_classes, task.num_classes) if task.kind == "classification" else (1, 1),
        dtype=torch.int64,
        device=device,
    )
    with torch.inference_mode(), autocast(device, amp):
        for batch in task.validation_batches(batch_size):
            logits = task.logits(batch.inputs)
            loss, n = _loss(task, logits, batch)
            total_loss += loss.double() * n
            count += n
            if task.kind == "classification":
                predicted = logits.argmax(dim=-1)
                index = batch.targets * task.num_classes + predicted
                confusion += torch.bincount(index, minlength=task.num_classes**2).view_as(confusion)
    task.model.train()
    mean = float(total_loss.item()) / max(count, 1)
    if task.kind == "language_model":
        return {"val_loss": mean, "perplexity": math.exp(min(mean, 50.0))}
    matrix = confusion.cpu().double()
    tp = matrix.diag()
    precision = tp / matrix.sum(0).clamp(min=1)
    recall = tp / matrix.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    present = matrix.sum(1) > 0
    return {
        "val_loss": mean,
        "accuracy": float(tp.sum() / matrix.sum().clamp(min=1)),
        "f1": float(f1[present].mean()) if bool(present.any()) else 0.0,
    }


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def fit(
    task: Task,
    hp: dict[str, Any],
    ctx: TrainContext,
    device: torch.device,
    checkpoint: Checkpoint,
    state: dict[str, Any] | None,
    extra: dict[str, Any],
) -> FitResult:
    """Train for hp["epochs"], resuming from `state`; checkpoint and report after each epoch."""
    model = task.model
    optimizer = _optimizer(model, hp)
    generator = torch.Generator().manual_seed(hp["seed"])
    epochs, batch_size = hp["epochs"], hp["batch_size"]
    amp = bool(hp["mixed_precision"])
    steps_per_epoch = max(1, math.ceil(task.n_train / batch_size))
    total_steps = steps_per_epoch * epochs
    history: list[dict[str, Any]] = []
    start_epoch, global_step, resumed = 0, 0, None
    if state is not None:
        _restore(state, model, optimizer, generator, device)
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        history = list(state["history"])
        resumed = start_epoch
        _replay_reports(ctx, history, start_epoch, epochs)

    model.train()
    trained_samples, train_seconds, last_report = 0, 0.0, time.monotonic()
    for epoch in range(start_epoch + 1, epochs + 1):
        epoch_started = time.perf_counter()
        running = torch.zeros((), device=device, dtype=torch.float64)
        running_n, seen, lr = 0, 0, hp["learning_rate"]
        for step, batch in enumerate(task.train_batches(batch_size, generator), 1):
            lr = learning_rate_at(global_step, total_steps, hp)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, amp):
                logits = task.logits(batch.inputs)
            loss, n = _loss(task, logits, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if hp["max_grad_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), hp["max_grad_norm"])
            optimizer.step()
            running += loss.detach().double() * n
            running_n += n
            seen += batch.size
            global_step += 1
            if time.monotonic() - last_report >= REPORT_EVERY_SECONDS:
                last_report = time.monotonic()
                train_loss = float(running.item()) / max(running_n, 1)
                _check_finite(train_loss, epoch, step)
                done = ((epoch - 1) * steps_per_epoch + step) / total_steps
                ctx.report(
                    PREPARE_SHARE + TRAIN_SHARE * done,
                    {"epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch,
                     "train_loss": round(train_loss, 6)},
                )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - epoch_started
        train_seconds += elapsed
        trained_samples += seen
        train_loss = float(running.item()) / max(running_n, 1)
        _check_finite(train_loss, epoch, None)
        entry: dict[str, Any] = {"train_loss": train_loss}
        if task.kind == "language_model":
            entry["train_perplexity"] = math.exp(min(train_loss, 50.0))
        entry |= _held_out(task, batch_size, device, amp, global_step)
        entry |= {
            "learning_rate": lr,
            "epoch_time": elapsed,
            "samples_per_second": seen / elapsed if elapsed > 0 else None,
        }
        entry = _rounded(entry)
        history.append({"epoch": epoch, **entry})
        checkpoint.save(
            {
                "epoch": epoch,
                "global_step": global_step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(generator, device),
                "history": history,
                "extra": extra,
            }
        )  # before the report: a job stopped right after it resumes from this epoch
        ctx.report(PREPARE_SHARE + TRAIN_SHARE * epoch / epochs, entry, epoch=epoch)

    if history and history[-1]["epoch"] == epochs and start_epoch < epochs:
        final = {k: v for k, v in history[-1].items() if k not in ("epoch", "learning_rate")}
    else:  # nothing left to train (resumed at the end) or an interrupted history: measure now
        final = _rounded(evaluate(task, batch_size, device, amp))
    speed = trained_samples / train_seconds if train_seconds > 0 else None
    final.pop("epoch_time", None)
    final["samples_per_second"] = round(speed, 3) if speed else None
    optimizer.zero_grad(set_to_none=True)
    del optimizer
    return FitResult(
        metrics=final,
        history=history,
        epochs_run=max(0, epochs - start_epoch),
        resumed_from_epoch=resumed,
        train_seconds=round(train_seconds, 3),
        samples_per_second=speed,
    )


def _restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Put the model, optimizer and random streams back where a checkpoint left them."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"]["shuffle"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and state["rng"].get("cuda") is not None:
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    return {
        "shuffle": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _replay_reports(
    ctx: TrainContext, history: list[dict[str, Any]], start_epoch: int, epochs: int
) -> None:
    for past in history:  # a rescued job's history starts empty in the new process
        done = PREPARE_SHARE + TRAIN_SHARE * past["epoch"] / epochs
        ctx.report(done, {k: v for k, v in past.items() if k != "epoch"}, epoch=past["epoch"])
    ctx.report(
        PREPARE_SHARE + TRAIN_SHARE * min(start_epoch, epochs) / epochs,
        {"resumed_from_epoch": start_epoch},
    )


def _check_finite(loss: float, epoch: int, step: int | None) -> None:
    if not math.isfinite(loss):
        where = f"epoch {epoch}" + (f", step {step}" if step else "")
        raise errors.JobFailure(
            f"training diverged: the loss became {loss} at {where}; "
            "try a lower learning_rate or max_grad_norm"
        )


def result_info(
    choice: DeviceChoice, model: torch.nn.Module, fitted: FitResult, notes: list[str]
) -> dict[str, Any]:
    """The facts every model type reports beside its metrics."""
    info: dict[str, Any] = {
        "device": choice.description,
        "parameters": parameter_count(model),
        "epochs_trained": fitted.epochs_run,
        "history_epochs": len(fitted.history),
    }
    if fitted.resumed_from_epoch is not None:
        info["resumed_from_epoch"] = fitted.resumed_from_epoch
    if choice.device.type == "cuda":
        info["peak_gpu_memory_mb"] = round(
            torch.cuda.max_memory_allocated(choice.device) / 2**20, 1
        )
    all_notes = ([choice.note] if choice.note else []) + notes + fitted.notes
    if all_notes:
        info["notes"] = all_notes
    return info
