"""TensorFlow runtime: the queue's overhead around a Keras training job.

    .venv/bin/python bench/bench_keras.py [--runs 3] [--job mobilenet] [--poll 0] [--epochs N]
                                          [--json OUT]

The same training job (same data, same hyperparameters, same seed) timed two ways, median of
--runs each, in turns so that noise on a shared machine hits both: submitted through the real
API to a real `tensorflow` worker on the embedded store until the status says completed
(polled every --poll seconds; 0 = the API's long-poll), and run as a fresh Python script that
calls the runtime's `train` (what a user would otherwise do: it pays the TensorFlow import and
the graph building of `model.fit` too). The ratio API / script is the queue's overhead: the
HTTP round trips, the claim, the child process and its progress channel, the model store.
--epochs replaces the job's 3 epochs, for a quick run.
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

from aijobs.demo import write_demo_data

JOBS: dict[str, dict[str, Any]] = {
    "mobilenet": {
        "model_type": "mobilenet",
        "data_path": "image_classification",
        "hyperparameters": {"epochs": 3, "batch_size": 16},
    },
    "efficientnet": {
        "model_type": "efficientnet",
        "data_path": "image_classification",
        "hyperparameters": {"epochs": 3, "batch_size": 16},
    },
    "inception": {
        "model_type": "inception",
        "data_path": "cifar10",
        "hyperparameters": {"epochs": 3, "batch_size": 16},
    },
}
SCRIPT = """
import sys, time
from pathlib import Path
started = time.perf_counter()
sys.path.insert(0, {repo!r})
from tests.runtime_support import FakeContext
from aijobs.runtimes.tensorflow.runtime import TensorFlowRuntime
out = Path({out!r}); out.mkdir(parents=True)
ctx = FakeContext(model_dir=out, data_roots=[Path({data!r})])
result = TensorFlowRuntime().train({model_type!r}, Path({path!r}), {hp!r}, ctx)
print(result.metrics["accuracy"])
"""


def through_api(system: System, job: dict[str, Any], poll: float) -> tuple[float, float, float]:
    """Submit, then poll the status (0: the API's long-poll, ?wait=30) until it ends."""
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
    metrics = done["result"]["metrics"]
    return wall, float(metrics["training_time"]), float(metrics["accuracy"])


def as_script(job: dict[str, Any], data: Path, out: Path) -> tuple[float, float]:
    code = script_for(SCRIPT, job, data, out)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return time.perf_counter() - started, float(done.stdout.strip().splitlines()[-1])


def overhead(job: dict[str, Any], data: Path, tmp: Path, runs: int, poll: float) -> dict[str, Any]:
    system = System(home=tmp / "var", data=data)
    api: list[float] = []
    child: list[float] = []
    script: list[float] = []
    accuracy: dict[str, list[float]] = {"api": [], "script": []}
    try:
        system.start_api()
        system.start_worker("tensorflow")
        for i in range(runs):
            wall, training, acc = through_api(system, job, poll)
            api.append(wall)
            child.append(training)
            accuracy["api"].append(acc)
            seconds, acc = as_script(job, data, tmp / f"script{i}")
            script.append(seconds)
            accuracy["script"].append(acc)
            print(f"run {i + 1}: API {wall:.2f}s (training_time {training:.2f}s), "
                  f"script {seconds:.2f}s", flush=True)  # fmt: skip
    finally:
        system.stop_all()
    result = {
        "job": job,
        "poll_seconds": poll,
        "api_wall_s": statistics.median(api),
        "api_training_time_s": statistics.median(child),
        "script_wall_s": statistics.median(script),
        "runs": {"api": api, "api_training_time": child, "script": script},
        "accuracy": accuracy,
    }
    result["api_vs_script"] = result["api_wall_s"] / result["script_wall_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--job", choices=sorted(JOBS), default="mobilenet")
    parser.add_argument(
        "--poll", type=float, default=0.0, help="status poll interval; 0 = long-poll (?wait=30)"
    )
    parser.add_argument("--epochs", type=int, help="epochs of the training job (default: 3)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    job = JOBS[args.job]
    if args.epochs is not None:
        job = {**job, "hyperparameters": {**job["hyperparameters"], "epochs": args.epochs}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        write_demo_data(data)
        over = overhead(job, data, tmp, args.runs, args.poll)
        print(
            f"\n{args.job} job {job['hyperparameters']}, median of {args.runs}: "
            f"API {over['api_wall_s']:.2f}s (child's training_time "
            f"{over['api_training_time_s']:.2f}s), script {over['script_wall_s']:.2f}s\n"
            f"API / script = {over['api_vs_script']:.3f}"
        )
        if args.json:
            args.json.write_text(json.dumps(over, indent=2, default=str))


if __name__ == "__main__":
    main()
