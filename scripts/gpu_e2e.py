"""GPU end to end: the real API and GPU workers on a CUDA machine, one training job per PyTorch
model type with ``requires_gpu: true``, then inference with each trained model.

    python3 scripts/gpu_e2e.py --out DIR [--port 8123] [--only gpt,bert] [--dry-run-on-cpu]

Needs aijobs installed (with its entry points) and a CUDA build of torch. Writes DIR/gpu_e2e.json
(every job's final status) and DIR/gpu_e2e.txt (a readable summary), and exits non-zero when a
job did not complete on CUDA. CI machines have no GPU: there it runs with --dry-run-on-cpu (the
GPU workers train on the CPU, AIJOBS_ALLOW_MISSING_GPU=1) on one small model type.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

JOBS: list[dict[str, Any]] = [
    # The spec's GPU examples, as written (ResNet, GPT-style transformer) ...
    {
        "model_type": "resnet",
        "data_path": "/data/image_classification",
        "hyperparameters": {"epochs": 10, "learning_rate": 0.001, "batch_size": 32},
        "description": "Train ResNet for image classification",
        "requires_gpu": True,
        "framework_override": "pytorch-2.0-gpu",
    },
    {
        "model_type": "transformer",
        "data_path": "/data/text_generation",
        "hyperparameters": {
            "epochs": 3,
            "learning_rate": 0.0003,
            "batch_size": 8,
            "max_length": 1024,
            "num_layers": 12,
            "hidden_size": 768,
        },
        "description": "Train GPT-style transformer for text generation",
        "requires_gpu": True,
        "framework_override": "pytorch-2.1-gpu",
    },
    # ... and every other PyTorch model type, routed by model type + GPU.
    {
        "model_type": "bert",
        "data_path": "/data/sentiment_analysis.csv",
        "hyperparameters": {
            "epochs": 5,
            "learning_rate": 0.0001,
            "batch_size": 16,
            "max_length": 512,
        },
        "requires_gpu": True,
    },
    {"model_type": "gpt", "data_path": "/data/text_generation", "requires_gpu": True},
    {"model_type": "vgg", "data_path": "/data/cifar10", "requires_gpu": True},
    {"model_type": "alexnet", "data_path": "/data/cifar10", "requires_gpu": True},
]
INFERENCE_INPUT = {
    "bert": ("This is a great product!", {}),
    "transformer": ("The model", {"temperature": 0.7, "max_length": 40}),
    "gpt": ("Once upon a time", {"max_length": 40, "top_k": 20}),
}


def image_input(data: Path, job: dict[str, Any]) -> str:
    folder = data / job["data_path"].removeprefix("/data/")
    first_class = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    return str(sorted(first_class.iterdir())[0])


def wait(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}/status", params={"wait": 30}).json()
        if status["status"] in {"completed", "failed", "cancelled"} or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def wait_for_gpu_workers(client: httpx.Client) -> None:
    """Until every GPU queue has a worker (or about a minute has passed)."""
    for _ in range(300):
        try:
            queues = client.get("/queues").json()["queues"]
            if all(q["has_worker"] for q in queues if q["queue"].endswith("-gpu")):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def infer(client: httpx.Client, data: Path, job: dict[str, Any], model_id: str) -> dict[str, Any]:
    """Run one inference with the model `job` trained; its final status."""
    model_type = job["model_type"]
    if model_type in INFERENCE_INPUT:
        text, params = INFERENCE_INPUT[model_type]
    else:
        text, params = image_input(data, job), {"top_k": 3}
    inference = client.post(
        "/jobs/inference",
        json={"model_id": model_id, "input_data": text, "parameters": params},
    ).json()
    return wait(client, inference["job_id"], 120)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def summary_lines(report: list[dict[str, Any]]) -> list[str]:
    lines = []
    for entry in report:
        training, result = entry["training"], entry["training"].get("result") or {}
        metrics = result.get("metrics", {})
        lines.append(
            f"{entry['request']['model_type']:12} queue={training['queue']:16} "
            f"status={training['status']:9} cuda={entry['on_cuda']!s:5} "
            f"done_after={entry['seconds_since_submission']:6}s device={result.get('device')} "
            f"metrics={json.dumps(metrics)[:160]} error={training.get('error')}"
        )
        if "inference" in entry:
            out = entry["inference"]
            lines.append(f"{'':12} inference={out['status']} {json.dumps(out.get('result'))[:300]}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--only", default="", help="comma-separated model types to run")
    parser.add_argument(
        "--dry-run-on-cpu", action="store_true", help="check the script itself without a GPU"
    )
    args = parser.parse_args()
    wanted = {t.strip() for t in args.only.split(",") if t.strip()}
    jobs = [job for job in JOBS if not wanted or job["model_type"] in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data"
    env = {
        **os.environ,
        "AIJOBS_HOME": str(tmp / "var"),
        "AIJOBS_DATA_ROOTS": str(data),
        "PYTHONUNBUFFERED": "1",
    }
    if args.dry_run_on_cpu:
        env["AIJOBS_ALLOW_MISSING_GPU"] = "1"
    me = [sys.executable, "-m", "aijobs"]
    subprocess.run([*me, "demo-data", str(data)], env=env, check=True, capture_output=True)
    logs = open(args.out / "gpu_e2e_processes.log", "wb")  # noqa: SIM115 - children write to it
    procs = [
        subprocess.Popen(
            [*me, "serve", "--port", str(args.port)], env=env, stdout=logs, stderr=logs
        ),
        *(
            subprocess.Popen([*me, "worker", "--queue", q], env=env, stdout=logs, stderr=logs)
            for q in ("pytorch-2.1-gpu", "pytorch-2.0-gpu")
        ),
    ]
    report: list[dict[str, Any]] = []
    ok = True
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60)
        wait_for_gpu_workers(client)
        submitted = [
            (job, client.post("/jobs/training", json=job).json(), time.monotonic()) for job in jobs
        ]
        for job, accepted, started in submitted:
            status = wait(client, accepted["job_id"], args.timeout)
            entry: dict[str, Any] = {
                "request": job,
                "accepted": accepted,
                "training": status,
                "seconds_since_submission": round(time.monotonic() - started, 1),
            }
            result = status.get("result") or {}
            device = json.dumps(result.get("device", "")) + json.dumps(
                result.get("device_name", "")
            )
            entry["on_cuda"] = "cuda" in device
            ok &= status["status"] == "completed" and (entry["on_cuda"] or args.dry_run_on_cpu)
            if status["status"] == "completed":
                entry["inference"] = infer(client, data, job, result["model_id"])
                ok &= entry["inference"]["status"] == "completed"
            report.append(entry)
    finally:
        stop(procs)
    (args.out / "gpu_e2e.json").write_text(json.dumps(report, indent=2, default=str))
    lines = summary_lines(report)
    where = "on the CPU (dry run)" if args.dry_run_on_cpu else "on CUDA"
    summary = "\n".join(lines) + f"\nall completed {where}: {ok}\n"
    (args.out / "gpu_e2e.txt").write_text(summary)
    print(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
