"""Every built-in model type at its defaults on the demo data: what it reaches, how long it takes,
and the same training as a direct script beside it (the table in docs/runtimes.md).

    .venv/bin/python bench/bench_models.py [--models vgg,alexnet] [--epochs N] [--runs N]
                                           [--skip-api] [--json OUT]

Each model type trains twice, one at a time: submitted through the API to a real worker until its
status says completed (wall time from the submission), and as a fresh Python script that calls
the runtime itself, with no queue, API or worker (what a user would otherwise run; it pays its
imports too). Both use the same data, hyperparameters and seed, so their metrics should agree
and their times differ by the queue's overhead only. Language models are compared with the
unigram baseline: the perplexity of predicting every token by its frequency in the text.
--epochs overrides every model type's epochs (a quick run); the table uses the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.direct import script_for
from tests.integration.harness import TERMINAL, System

from aijobs.demo import write_demo_data
from aijobs.model_types import MODEL_TYPES

# model type -> (demo data, hyperparameters: the defaults, or the API reference's example's)
JOBS: dict[str, tuple[str, dict[str, Any]]] = {
    "logistic_regression": ("tabular_data.csv", {}),
    "svm": ("tabular_data.csv", {}),
    "random_forest": ("tabular_data.csv", {"n_estimators": 100}),
    "bert": ("sentiment_analysis.csv", {}),
    "transformer": ("text_generation", {}),
    "gpt": ("text_generation", {}),
    "resnet": ("image_classification", {}),
    "vgg": ("image_classification", {}),
    "alexnet": ("image_classification", {}),
    "inception": ("cifar10", {}),
    "mobilenet": ("image_classification", {}),
    "efficientnet": ("image_classification", {}),
}
RUNTIME_CLASSES = {
    "sklearn": "aijobs.runtimes.sklearn.runtime:SklearnRuntime",
    "pytorch": "aijobs.runtimes.torch.runtime:TorchRuntime",
    "tensorflow": "aijobs.runtimes.tensorflow.runtime:TensorFlowRuntime",
}
SCRIPT = """
import json, sys, time
from importlib import import_module
from pathlib import Path
started = time.perf_counter()
sys.path.insert(0, {repo!r})
from tests.runtime_support import FakeContext
module, _, name = {runtime!r}.partition(":")
runtime = getattr(import_module(module), name)()
out = Path({out!r}); out.mkdir(parents=True)
ctx = FakeContext(model_dir=out, data_roots=[Path({data!r})])
training = time.perf_counter()
result = runtime.train({model_type!r}, Path({path!r}), {hp!r}, ctx)
done = time.perf_counter()
times = {{"seconds": done - started, "train_s": done - training}}
print(json.dumps({{**times, "metrics": result.metrics}}))
"""


def metric_of(metrics: dict[str, Any]) -> tuple[str, float]:
    for name in ("accuracy", "perplexity", "r2"):
        if metrics.get(name) is not None:
            return name, float(metrics[name])
    raise KeyError(f"no metric in {metrics}")


def through_api(system: System, job: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Submitted, then followed with the long-poll as the SDK does: a client polling every
    few milliseconds would take CPU from the training it times."""
    started = time.perf_counter()
    job_id = system.submit("/jobs/training", job)
    with httpx.Client(base_url=system.url, timeout=90) as client:
        while True:
            done = client.get(f"/jobs/{job_id}/status", params={"wait": 60}).json()
            if done["status"] in TERMINAL:
                break
    assert done["status"] == "completed", done
    return time.perf_counter() - started, done["result"]["metrics"]


def as_script(job: dict[str, Any], data: Path, out: Path) -> tuple[float, float, dict[str, Any]]:
    """(wall time, time inside the runtime's train, metrics)."""
    runtime = RUNTIME_CLASSES[MODEL_TYPES[job["model_type"]].runtime]
    code = script_for(SCRIPT, job, data, out, runtime=runtime)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, answer["train_s"], answer["metrics"]


def unigram_perplexity(model_dir: Path, folder: Path) -> float:
    """Perplexity of predicting each token by its frequency in the text, with the model's
    tokenizer: what a language model must beat to have learned anything beyond counting."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    text = "\n".join(p.read_text() for p in sorted(folder.rglob("*.txt")))
    counts = Counter(tok.encode(text).ids)
    total = sum(counts.values())
    entropy = -sum(n / total * math.log(n / total) for n in counts.values())
    return math.exp(entropy)


def row(
    model_type: str,
    data: Path,
    tmp: Path,
    system: System | None,
    epochs: int | None,
    runs: int,
) -> dict[str, Any]:
    """Script, then aijobs, `runs` times in turn: the medians of each, every run's times, and
    the median of the runs' ratios."""
    path, hp = JOBS[model_type]
    hp = {**hp, **({"epochs": epochs} if epochs is not None else {})}
    job = {"model_type": model_type, "data_path": path, "hyperparameters": hp}
    times: dict[str, list[float]] = {
        key: [] for key in ("script_s", "script_train_s", "api_s", "api_train_s")
    }
    values: dict[str, set[float]] = {"script": set(), "api": set()}
    name = ""
    for n in range(runs):
        out_dir = tmp / f"script-{model_type}-{n}"
        script_s, script_train_s, script_metrics = as_script(job, data, out_dir)
        name, value = metric_of(script_metrics)
        values["script"].add(value)
        times["script_s"].append(script_s)
        times["script_train_s"].append(script_train_s)
        if system is not None:
            api_s, api_metrics = through_api(system, job)
            values["api"].add(metric_of(api_metrics)[1])
            times["api_s"].append(api_s)
            # The worker's child times the runtime's train as the script does (training_time):
            # the rest of api_s is the queue's (claim, child start, publish, status).
            times["api_train_s"].append(api_metrics["training_time"])
    out: dict[str, Any] = {
        "model_type": model_type,
        "data": path,
        "hyperparameters": hp,
        "metric": name,
        "script": min(values["script"]),  # one value: the same seed gives the same metric
        "runs": {k: [round(t, 3) for t in v] for k, v in times.items() if v},
    }
    out |= {k: statistics.median(v) for k, v in times.items() if v}
    if len(values["script"] | values["api"]) > 1:
        out["metric_spread"] = sorted(values["script"] | values["api"])
    if name == "perplexity":
        out["unigram_perplexity"] = unigram_perplexity(tmp / f"script-{model_type}-0", data / path)
    if system is not None:
        out["api"] = min(values["api"])
        # Each run's pair ran back to back: the median of their ratios cancels the machine's
        # drift between runs (the script alone varied by up to 25 % from one run to the next).
        pairs = zip(times["api_s"], times["script_s"], strict=True)
        out["time_ratio"] = statistics.median(api / script for api, script in pairs)
    return out


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| Model type | Data | Settings | Metric | Through aijobs | Direct script "
        "| Time, aijobs / script (median ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["hyperparameters"].items()) or "defaults"
        metric = r["metric"]
        if "unigram_perplexity" in r:
            metric += f" (unigram {r['unigram_perplexity']:.0f})"
        api = f"{r['api']:.3g}" if "api" in r else "-"
        script = seconds(r["script_s"])
        times = (
            f"{seconds(r['api_s'])} / {script} ({r['time_ratio']:.2f}x)"
            if "api_s" in r
            else f"- / {script}"
        )
        lines.append(
            f"| {r['model_type']} | {r['data']} | {settings} | {metric} | {api} | "
            f"{r['script']:.3g} | {times} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(JOBS), help="comma-separated model types")
    parser.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    parser.add_argument("--runs", type=int, default=1, help="runs of each, in turn (medians)")
    parser.add_argument("--skip-api", action="store_true", help="the direct scripts only")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in JOBS]
    if unknown:
        parser.error(f"unknown model types: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        write_demo_data(data)
        system = None if args.skip_api else System(home=tmp / "var", data=data)
        rows = []
        try:
            if system is not None:
                system.start_api()
                queues = sorted({MODEL_TYPES[m].queues[0] for m in models})
                system.start_worker(*queues)
            for model_type in models:
                rows.append(row(model_type, data, tmp, system, args.epochs, args.runs))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if system is not None:
                system.stop_all()
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
