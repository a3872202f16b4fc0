"""PyTorch runtime: the queue's overhead around a training job, and CPU throughput per model type.

    .venv/bin/python bench/bench_torch.py [--runs 3] [--job resnet] [--poll 1] [--skip-api]
                                          [--models bert,gpt] [--epochs N] [--json OUT]

1. Overhead: the same training job (same data, same hyperparameters) timed three ways, median
   of --runs each, in turns: submitted through the API to a real worker until the status says
   completed (polled every --poll seconds; 0 = the API's long-poll); run as a fresh Python
   script calling the runtime (what a user would otherwise do: it pays the torch import too);
   and called in-process with everything already imported.
2. Throughput: samples/s of the training steps per model type on this machine's CPU, with the
   runtime's defaults, and for images the cost of loading the folder and of assembling batches
   against the time of an epoch (data loading must not be the bottleneck).

--models limits the throughput table to some model types; --epochs sets the epochs of every
training (2 in the table, the runtime's default in the overhead job), for a quick run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.direct import script_for
from tests.integration.harness import System
from tests.runtime_support import FakeContext

from aijobs.demo import write_demo_data
from aijobs.runtimes.torch.runtime import TorchRuntime

JOBS: dict[str, dict[str, Any]] = {
    "resnet": {"model_type": "resnet", "data_path": "image_classification", "hyperparameters": {}},
    "bert": {"model_type": "bert", "data_path": "sentiment_analysis.csv", "hyperparameters": {}},
    "gpt": {"model_type": "gpt", "data_path": "text_generation", "hyperparameters": {}},
}
THROUGHPUT: list[tuple[str, str, dict[str, Any]]] = [
    ("bert", "sentiment_analysis.csv", {"epochs": 2}),
    ("gpt", "text_generation", {"epochs": 2}),
    ("resnet", "image_classification", {"epochs": 2}),
    ("vgg", "image_classification", {"epochs": 2}),
    ("alexnet", "image_classification", {"epochs": 2}),
]
SCRIPT = """
import sys, time
from pathlib import Path
started = time.perf_counter()
sys.path.insert(0, {repo!r})
from tests.runtime_support import FakeContext
from aijobs.runtimes.torch.runtime import TorchRuntime
out = Path({out!r}); out.mkdir(parents=True)
ctx = FakeContext(model_dir=out, data_roots=[Path({data!r})])
TorchRuntime().train({model_type!r}, Path({path!r}), {hp!r}, ctx)
print(time.perf_counter() - started)
"""


def ctx_in(directory: Path, data: Path) -> FakeContext:
    directory.mkdir(parents=True)
    return FakeContext(model_dir=directory, data_roots=[data])


def through_api(system: System, job: dict[str, Any], poll: float) -> tuple[float, float]:
    """Submit, then poll the status every `poll` seconds (0: the API's long-poll, ?wait=30)."""
    started = time.perf_counter()
    job_id = system.submit("/jobs/training", job)
    while True:
        params = {"wait": 30} if poll == 0 else {}
        done = httpx.get(f"{system.url}/jobs/{job_id}/status", params=params, timeout=60).json()
        if done["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(poll or 0.5)  # (a server without long-poll answers at once)
    wall = time.perf_counter() - started
    assert done["status"] == "completed", done
    return wall, float(done["result"]["metrics"]["training_time"])


def as_script(job: dict[str, Any], data: Path, out: Path) -> float:
    code = script_for(SCRIPT, job, data, out)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - started


def in_process(job: dict[str, Any], data: Path, out: Path) -> float:
    started = time.perf_counter()
    TorchRuntime().train(
        job["model_type"], data / job["data_path"], dict(job["hyperparameters"]), ctx_in(out, data)
    )
    return time.perf_counter() - started


def overhead(job: dict[str, Any], data: Path, tmp: Path, runs: int, poll: float) -> dict[str, Any]:
    """Rounds of API, script, in-process in turn, so that noise on a shared machine hits all."""
    in_process(job, data, tmp / "warm")  # imports and first-call costs, not measured
    system = System(home=tmp / "var", data=data)
    api: list[float] = []
    child: list[float] = []
    script: list[float] = []
    direct: list[float] = []
    try:
        system.start_api()
        system.start_worker("pytorch-2.1-cpu", "pytorch-2.0-cpu")
        for i in range(runs):
            wall, training = through_api(system, job, poll)
            api.append(wall)
            child.append(training)
            script.append(as_script(job, data, tmp / f"script{i}"))
            direct.append(in_process(job, data, tmp / f"direct{i}"))
    finally:
        system.stop_all()
    result = {
        "job": job,
        "poll_seconds": poll,
        "api_wall_s": statistics.median(api),
        "api_training_time_s": statistics.median(child),
        "script_wall_s": statistics.median(script),
        "in_process_s": statistics.median(direct),
        "runs": {"api": api, "api_training_time": child, "script": script, "in_process": direct},
    }
    result["api_vs_script"] = result["api_wall_s"] / result["script_wall_s"]
    result["api_vs_in_process"] = result["api_wall_s"] / result["in_process_s"]
    return result


def image_pipeline(data: Path) -> dict[str, float]:
    """Seconds to load the folder once, and to assemble one epoch of batches (no model)."""
    import torch

    from aijobs.runtimes import datasets
    from aijobs.runtimes.torch import vision

    folder = data / "image_classification"
    started = time.perf_counter()
    _, items, _ = datasets.find_images(folder)
    images = vision.preload(items, folder, 32)
    load = time.perf_counter() - started
    labels = [label for _, label in items]
    split = datasets.split_indices(len(items), 0.2, 42, labels)
    stats = vision.channel_stats(images, split[0])
    task = vision.ImageClassification(
        torch.nn.Identity(), images, labels, split, stats, True, torch.device("cpu"), 10
    )
    started = time.perf_counter()
    batches = sum(1 for _ in task.train_batches(32, torch.Generator().manual_seed(0)))
    assemble = time.perf_counter() - started
    return {"images": len(items), "load_s": load, "epoch_batches": batches, "assemble_s": assemble}


def throughput(
    data: Path, tmp: Path, models: list[str], epochs: int | None
) -> list[dict[str, Any]]:
    rows = []
    for model_type, path, hp in THROUGHPUT:
        if model_type not in models:
            continue
        if epochs is not None:
            hp = {**hp, "epochs": epochs}
        ctx = ctx_in(tmp / f"tp-{model_type}", data)
        started = time.perf_counter()
        result = TorchRuntime().train(model_type, data / path, dict(hp), ctx)
        wall = time.perf_counter() - started
        per_epoch = [m for _, m, e in ctx.reports if e is not None]
        rows.append(
            {
                "model_type": model_type,
                "architecture": result.info.get("architecture"),
                "parameters": result.info["parameters"],
                "samples_per_second": result.metrics["samples_per_second"],
                "epoch_time_s": per_epoch[-1]["epoch_time"],
                "wall_s": wall,
                "metric": result.metrics.get("accuracy", result.metrics.get("perplexity")),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--job", choices=sorted(JOBS), default="resnet")
    parser.add_argument("--skip-api", action="store_true", help="throughput only")
    parser.add_argument(
        "--poll", type=float, default=1.0, help="status poll interval; 0 = long-poll (?wait=30)"
    )
    parser.add_argument(
        "--models",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        default=[m for m, _, _ in THROUGHPUT],
        help="comma-separated model types of the throughput table (default: all)",
    )
    parser.add_argument("--epochs", type=int, help="epochs of every training job")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    unknown = set(args.models) - {m for m, _, _ in THROUGHPUT}
    if unknown:
        parser.error(f"unknown model type(s) {sorted(unknown)}")
    job = JOBS[args.job]
    if args.epochs is not None:
        job = {**job, "hyperparameters": {**job["hyperparameters"], "epochs": args.epochs}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        write_demo_data(data)
        report: dict[str, Any] = {"image_pipeline": image_pipeline(data)}
        pipe = report["image_pipeline"]
        print(
            f"image folder: {pipe['images']} images loaded in {pipe['load_s']:.3f}s; one epoch of "
            f"batches ({pipe['epoch_batches']}, augmented) assembled in {pipe['assemble_s']:.3f}s"
        )
        report["throughput"] = throughput(data, tmp, args.models, args.epochs)
        print(f"\n{'model':<10}{'architecture':<14}{'params':>11}{'samples/s':>11}{'epoch s':>9}")
        for row in report["throughput"]:
            print(
                f"{row['model_type']:<10}{row['architecture']!s:<14}{row['parameters']:>11,}"
                f"{row['samples_per_second']:>11.1f}{row['epoch_time_s']:>9.2f}"
            )
        if not args.skip_api:
            over = overhead(job, data, tmp, args.runs, args.poll)
            report["overhead"] = over
            print(
                f"\n{args.job} job, median of {args.runs}: API {over['api_wall_s']:.2f}s "
                f"(child's training_time {over['api_training_time_s']:.2f}s), script "
                f"{over['script_wall_s']:.2f}s, in-process {over['in_process_s']:.2f}s\n"
                f"API / script = {over['api_vs_script']:.3f}; "
                f"API / in-process = {over['api_vs_in_process']:.3f}"
            )
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
