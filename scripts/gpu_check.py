"""The PyTorch runtime on a real GPU: one training job per model type with requires_gpu
semantics (the job's device is "cuda"; the spec's examples where it has one), then inference
with each model, then a checkpoint resume on CUDA. Writes gpu_check.json and gpu_check.txt
into --out.

    python3 scripts/gpu_check.py --out DIR [--only bert,resnet] [--data DIR]

Needs only torch, transformers, tokenizers, safetensors, pillow, numpy and scikit-learn (for
the demo data): no API, store or worker, nothing installed (it puts src/ on the path itself).
Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from aijobs.demo import write_demo_data  # noqa: E402
from aijobs.runtimes.torch.runtime import TorchRuntime  # noqa: E402

DRY_RUN = False  # --dry-run-on-cpu: the same script on a machine without CUDA
FREED_MB = 16  # growth of allocated GPU memory over a job that still counts as "freed"

# (name, model type, data, hyperparameters, inference input, inference parameters)
JOBS: list[tuple[str, str, str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "bert",
        "bert",
        "sentiment_analysis.csv",
        {},  # the defaults: 5 epochs of a 2x128 encoder
        "This is a great product!",
        {"temperature": 0.7, "max_length": 100},
    ),
    (
        "transformer (spec example, 12x768, context 1024)",
        "transformer",
        "text_generation",
        {
            "epochs": 3,
            "learning_rate": 0.0003,
            "batch_size": 8,
            "max_length": 1024,
            "num_layers": 12,
            "hidden_size": 768,
        },
        "The model",
        {"temperature": 0.7, "max_length": 40, "seed": 1},
    ),
    (
        "gpt",
        "gpt",
        "text_generation",
        {"epochs": 5, "batch_size": 4, "max_length": 64},
        "The model",
        {"temperature": 0.7, "max_length": 40, "seed": 1},
    ),
    (
        "resnet (spec example, ResNet-50)",
        "resnet",
        "image_classification",
        {"epochs": 10, "learning_rate": 0.001, "batch_size": 32, "num_classes": 1000, "depth": 50},
        "/data/image_classification/digit_3/digit_3_004.png",
        {"top_k": 5, "confidence_threshold": 0.01},
    ),
    (
        "vgg-16",
        "vgg",
        "image_classification",
        {"epochs": 5, "depth": 16},
        "/data/image_classification/digit_7/digit_7_004.png",
        {"top_k": 3},
    ),
    (
        "alexnet (128px, the ImageNet stem)",
        "alexnet",
        "cifar10",
        {"epochs": 5, "image_size": 128},
        "/data/cifar10/ship/ship_000.png",
        {"top_k": 3},
    ),
]


@dataclass
class Context:
    """A TrainContext with requires_gpu semantics that keeps what the runtime reports."""

    model_dir: Path
    checkpoint_dir: Path
    data_roots: list[Path]
    device: str = "cuda"
    job_id: str = "job_gpu-check"
    attempt: int = 1
    reports: list[tuple[float, dict[str, Any] | None, int | None]] = field(default_factory=list)
    stop_after_epoch: int | None = None

    def report(
        self, fraction: float, metrics: dict[str, Any] | None = None, *, epoch: int | None = None
    ) -> None:
        self.reports.append((fraction, metrics, epoch))
        if epoch is not None and epoch == self.stop_after_epoch:
            raise KeyboardInterrupt  # stands in for the worker dying after this epoch


def context(root: Path, name: str, data: Path, checkpoint: Path | None = None) -> Context:
    model_dir = root / name / "model"
    model_dir.mkdir(parents=True)
    checkpoint = checkpoint or root / name / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    return Context(model_dir=model_dir, checkpoint_dir=checkpoint, data_roots=[data])


def gpu_memory_mb() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {"allocated_mb": 0.0, "reserved_mb": 0.0}
    return {
        "allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1),
        "reserved_mb": round(torch.cuda.memory_reserved() / 2**20, 1),
    }


def run_job(
    runtime: TorchRuntime, job: tuple[Any, ...], data: Path, root: Path, index: int
) -> dict[str, Any]:
    import torch

    name, model_type, path, hp, prompt, parameters = job
    record: dict[str, Any] = {"name": name, "model_type": model_type, "hyperparameters": hp}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ctx = context(root, f"job{index}", data)
    record["before"] = gpu_memory_mb()
    started = time.perf_counter()
    result = runtime.train(model_type, data / path, dict(hp), ctx)
    record["train_seconds"] = round(time.perf_counter() - started, 2)
    record["metrics"] = result.metrics
    record["info"] = result.info
    record["history"] = [{"epoch": e, **(m or {})} for _, m, e in ctx.reports if e is not None]
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    record["peak_gpu_memory_mb"] = round(peak / 2**20, 1)
    record["after_training"] = gpu_memory_mb()

    started = time.perf_counter()
    model = runtime.load(ctx.model_dir)
    record["inference_device"] = str(model.device)
    first = runtime.predict(model, prompt, dict(parameters), [data])
    warm_started = time.perf_counter()
    runtime.predict(model, prompt, dict(parameters), [data])
    record["inference_ms"] = {
        "load_and_first": round((warm_started - started) * 1000, 1),
        "warm": round((time.perf_counter() - warm_started) * 1000, 1),
    }
    record["inference"] = first
    del model
    import gc

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    record["after_inference"] = gpu_memory_mb()
    on_cuda = str(result.info.get("device", "")).startswith("cuda") or DRY_RUN
    growth = record["after_training"]["allocated_mb"] - record["before"]["allocated_mb"]
    freed = growth < FREED_MB
    served_on_cuda = record["inference_device"].startswith("cuda") or DRY_RUN
    record["ok"] = bool(on_cuda and freed and served_on_cuda)
    if not on_cuda:
        record["problem"] = f"trained on {result.info.get('device')!r}, not CUDA"
    elif not freed:
        record["problem"] = (
            f"{record['after_training']['allocated_mb']} MB still allocated after training "
            f"({record['before']['allocated_mb']} MB before)"
        )
    return record


def resume_check(runtime: TorchRuntime, data: Path, root: Path) -> dict[str, Any]:
    """Stop after epoch 1 of 2, resume on CUDA, and compare with an uninterrupted run."""
    hp = {"epochs": 2, "batch_size": 16, "checkpoint_every_seconds": 0}
    csv = data / "training.csv"
    checkpoint = root / "resume-checkpoint"
    first = context(root, "resume1", data, checkpoint)
    first.stop_after_epoch = 1
    with contextlib.suppress(KeyboardInterrupt):
        runtime.train("bert", csv, dict(hp), first)
    second = context(root, "resume2", data, checkpoint)
    resumed = runtime.train("bert", csv, dict(hp), second)
    straight = runtime.train("bert", csv, dict(hp), context(root, "straight", data))
    same = abs(resumed.metrics["val_loss"] - straight.metrics["val_loss"]) < 1e-3
    return {
        "name": "checkpoint resume on CUDA",
        "resumed_from_epoch": resumed.info.get("resumed_from_epoch"),
        "epochs_trained_after_resume": resumed.info.get("epochs_trained"),
        "resumed_val_loss": resumed.metrics["val_loss"],
        "uninterrupted_val_loss": straight.metrics["val_loss"],
        "ok": resumed.info.get("resumed_from_epoch") == 1 and same,
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        f"device: {report['device']}",
        f"torch {report['torch']}, transformers {report['transformers']}, "
        f"python {report['python']}",
        "",
    ]
    for job in report["jobs"]:
        if "error" in job:
            lines.append(f"FAIL {job['name']}: {job['error']}")
            continue
        m = job["metrics"]
        score = (
            f"accuracy {m['accuracy']:.3f}"
            if "accuracy" in m
            else f"perplexity {m['perplexity']:.2f}"
        )
        lines.append(
            f"{'ok  ' if job['ok'] else 'FAIL'} {job['name']}: {job['info']['device']}, "
            f"{len(job['history'])} epochs, {score}, "
            f"{m.get('samples_per_second') or 0:.0f} samples/s, train {job['train_seconds']}s, "
            f"peak {job['peak_gpu_memory_mb']} MB, "
            f"allocated {job['before']['allocated_mb']} -> "
            f"{job['after_training']['allocated_mb']} MB, "
            f"{job['info']['parameters']:,} params, inference warm {job['inference_ms']['warm']} ms"
            + (f" -- {job['problem']}" if job.get("problem") else "")
        )
    resume = report.get("resume", {})
    if resume:
        status = "ok  " if resume.get("ok") else "FAIL"
        lines.append(f"{status} {resume.get('name', 'resume')}: {json.dumps(resume)}")
    lines.append("")
    lines.append(f"all ok: {report['ok']} ({report['seconds']}s)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="", help="comma-separated model types to run")
    parser.add_argument("--data", type=Path, help="demo data directory (default: a temp dir)")
    parser.add_argument(
        "--dry-run-on-cpu", action="store_true", help="check the script itself without a GPU"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers

    started = time.perf_counter()
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA",
        "jobs": [],
    }
    global DRY_RUN
    DRY_RUN = args.dry_run_on_cpu
    if DRY_RUN:
        os.environ["AIJOBS_ALLOW_MISSING_GPU"] = "1"
    else:
        os.environ.pop("AIJOBS_ALLOW_MISSING_GPU", None)  # a GPU job must really get the GPU
    wanted = {t.strip() for t in args.only.split(",") if t.strip()}
    runtime = TorchRuntime()
    if torch.cuda.is_available():  # CUDA context and cuBLAS handles first: the jobs' baseline
        x = torch.ones(64, 64, device="cuda")
        (x @ x).sum().item()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            (x @ x).sum().item()
        del x
        torch.cuda.empty_cache()
        report["baseline_gpu_memory"] = gpu_memory_mb()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = args.data or root / "data"
        write_demo_data(data)
        for index, job in enumerate(JOBS):
            if wanted and job[1] not in wanted:
                continue
            print(f"-- {job[0]}", flush=True)
            try:
                report["jobs"].append(run_job(runtime, job, data, root, index))
            except BaseException as exc:  # record and go on with the next model type
                report["jobs"].append(
                    {
                        "name": job[0],
                        "ok": False,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(),
                    }
                )
            print(json.dumps(report["jobs"][-1], default=str)[:2000], flush=True)
        if not wanted or "bert" in wanted:
            try:
                report["resume"] = resume_check(runtime, data, root)
            except BaseException as exc:
                report["resume"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["ok"] = bool(report["jobs"]) and all(j.get("ok") for j in report["jobs"])
    report["ok"] = report["ok"] and report.get("resume", {"ok": True}).get("ok", False)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    text = "\n".join(summary_lines(report)) + "\n"
    (args.out / "gpu_check.txt").write_text(text)
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
