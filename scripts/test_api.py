#!/usr/bin/env python3
"""Check a running aijobs API end to end: the six steps of the API reference's "Testing" section.

    python scripts/test_api.py [URL]              # default http://localhost:8000 ($AIJOBS_URL)

1. Test the health endpoint.
2. Submit a training job (the spec's scikit-learn Random Forest example, verbatim).
3. Monitor its progress until it ends (long-poll on its status); it must complete.
4. Submit an inference job with the trained model; it must complete.
5. Test multiple frameworks: one training job per framework family, routed by
   `framework_override`. The report gives each job's queue and whether a live worker serves it.
   A served job must complete. A job whose queue has no worker would wait, pending, until one
   starts: it is reported as waiting and then cancelled, so the check leaves nothing behind.
6. List all jobs (paging through them) and find this run's jobs with their final states.

Exit status: 0 when every step passed, 1 when one failed (or the API is unreachable), 2 on bad
usage. Standard library only: it runs with any Python >= 3.9, nothing to install.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")
RANDOM_FOREST = {  # the API reference's "Scikit-learn Random Forest" example
    "model_type": "random_forest",
    "data_path": "/data/tabular_data.csv",
    "hyperparameters": {
        "n_estimators": 100,
        "max_depth": 10,
        "min_samples_split": 5,
        "random_state": 42,
    },
    "description": "Train Random Forest for classification",
    "requires_gpu": False,
    "framework_override": "sklearn",
}
INFERENCE_INPUT = "5.1,3.5,1.4,0.2"  # one iris flower, as in the demo data
# One small job per framework family, on the demo data each family's examples use.
FRAMEWORKS: list[tuple[str, dict[str, Any]]] = [
    ("pytorch-2.1", {"model_type": "bert", "data_path": "/data/sentiment_analysis.csv"}),
    ("pytorch-2.0", {"model_type": "resnet", "data_path": "/data/image_classification"}),
    ("tensorflow", {"model_type": "inception", "data_path": "/data/cifar10"}),
    ("sklearn", {"model_type": "logistic_regression", "data_path": "/data/tabular_data.csv"}),
]
SMALL = {"epochs": 1, "batch_size": 16}  # keeps a served deep-learning job short


class StepFailed(Exception):
    pass


class Unreachable(StepFailed):
    pass


class Api:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        hold: float = 0.0,
    ) -> Any:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout + hold) as response:
                raw = response.read().decode()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                envelope = json.loads(text)
                why = f"{envelope['error']}: {envelope['detail']}"
            except (ValueError, KeyError, TypeError):
                why = text[:300]
            raise StepFailed(f"{method} {path} answered {exc.code}: {why}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach {self.url}: {reason}") from None
        return json.loads(raw) if "json" in kind else raw

    def status(self, job_id: str, wait: float = 0.0) -> dict[str, Any]:
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        body: dict[str, Any] = self.call("GET", f"/jobs/{job_id}/status", params=params, hold=wait)
        return body


class Report:
    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []

    def step(self, number: int, title: str) -> None:
        print(f"\n[{number}/6] {title}", flush=True)

    def line(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def done(self, title: str, outcome: str, started: float) -> None:
        print(f"      {outcome} ({time.monotonic() - started:.1f}s)", flush=True)
        self.results.append((title, outcome))


def describe(status: dict[str, Any]) -> str:
    parts = [status["status"], f"{status.get('progress', 0):.0%}"]
    history = status.get("history") or []
    if history and "epoch" in history[-1]:
        parts.append(f"epoch {history[-1]['epoch']}")
    for key, value in list((status.get("metrics") or {}).items())[:3]:
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
    return " · ".join(parts)


def follow(
    api: Api, report: Report, job_id: str, timeout: float, prefix: str = ""
) -> dict[str, Any]:
    """Long-poll the job until it ends, printing each change; its final status."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        left = deadline - time.monotonic()
        status = api.status(job_id, wait=max(0.0, min(2.0, left)))
        text = describe(status)
        if text != shown:
            report.line(prefix + text)
            shown = text
        if status["status"] in TERMINAL:
            return status
        if time.monotonic() >= deadline:
            raise StepFailed(f"job {job_id} still {status['status']} after {timeout:g}s")


def step_health(api: Api, report: Report) -> None:
    health = api.call("GET", "/health")
    report.line(f"status {health.get('status')} · version {health.get('version')}")
    if health.get("status") != "healthy":
        raise StepFailed(f"unhealthy: {health}")


def step_train(api: Api, report: Report) -> str:
    accepted = api.call("POST", "/jobs/training", RANDOM_FOREST)
    report.line(
        f"{accepted['job_id']} {accepted['status']} on queue {accepted.get('queue')} "
        f"(estimated {accepted['estimated_duration']})"
    )
    if accepted.get("queue_has_worker") is False:
        raise StepFailed(
            f"no live worker serves queue {accepted.get('queue')!r}: start one "
            "(`aijobs worker --queue sklearn`, or `make run`)"
        )
    job_id: str = accepted["job_id"]
    return job_id


def step_monitor(api: Api, report: Report, job_id: str, timeout: float) -> str:
    final = follow(api, report, job_id, timeout)
    if final["status"] != "completed":
        raise StepFailed(f"job {final['status']}: {final.get('error')}")
    result = final["result"]
    report.line(f"model {result['model_id']} ({result.get('framework')})")
    model_id: str = result["model_id"]
    return model_id


def step_inference(api: Api, report: Report, model_id: str, timeout: float) -> str:
    accepted = api.call(
        "POST",
        "/jobs/inference",
        {"model_id": model_id, "input_data": INFERENCE_INPUT, "parameters": {"probability": True}},
    )
    report.line(f"{accepted['job_id']} on queue {accepted.get('queue')}")
    final = follow(api, report, accepted["job_id"], timeout)
    if final["status"] != "completed":
        raise StepFailed(f"inference {final['status']}: {final.get('error')}")
    report.line(f"input {INFERENCE_INPUT!r} -> predictions {final['result'].get('predictions')}")
    job_id: str = accepted["job_id"]
    return job_id


def step_frameworks(
    api: Api, report: Report, gpu: bool, timeout: float
) -> tuple[dict[str, str], str]:
    submitted = []
    for override, body in FRAMEWORKS:
        request = {
            **body,
            "hyperparameters": {} if override == "sklearn" else dict(SMALL),
            "requires_gpu": gpu and override.startswith("pytorch"),
            "framework_override": override,
            "description": f"test_api.py: {override}",
            "timeout_seconds": timeout,
        }
        accepted = api.call("POST", "/jobs/training", request)
        submitted.append((override, body["model_type"], accepted))
    failures, waiting = [], 0
    for override, model_type, accepted in submitted:
        job_id, queue = accepted["job_id"], accepted.get("queue")
        label = f"{override:<12} {model_type:<20} -> queue {queue}"
        if not accepted.get("queue_has_worker"):
            cancelled = api.call("DELETE", f"/jobs/{job_id}")
            report.line(
                f"{label}: no worker serves it, the job would wait -> cancelled to clean up "
                f"({cancelled['status']})"
            )
            waiting += 1
            continue
        try:
            final = follow(api, report, job_id, timeout, prefix=f"{override}: ")
        except StepFailed as exc:
            api.call("DELETE", f"/jobs/{job_id}")
            final = {"status": "timed out", "error": str(exc)}
        if final["status"] == "completed":
            metrics = final["result"].get("metrics", {})
            shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, float))
            report.line(f"{label}: served, completed ({shown})")
        else:
            report.line(f"{label}: served, {final['status']}: {final.get('error')}")
            failures.append(override)
    if failures:
        raise StepFailed(f"served jobs did not complete: {', '.join(failures)}")
    served = len(submitted) - waiting
    note = f"{served} served and completed, {waiting} waiting for a worker (cancelled)"
    jobs = {a["job_id"]: f"training {m} via {o} (step 5)" for o, m, a in submitted}
    return jobs, note


def step_list(api: Api, report: Report, ours: dict[str, str]) -> None:
    found: dict[str, dict[str, Any]] = {}
    offset, total = 0, None
    while True:
        page = api.call("GET", "/jobs", params={"limit": 100, "offset": offset})
        total = page["total"]
        found.update({j["job_id"]: j for j in page["jobs"] if j["job_id"] in ours})
        offset += len(page["jobs"])
        if len(found) == len(ours) or len(page["jobs"]) < 100:
            break
    by_state = {
        state: api.call("GET", "/jobs", params={"status": state, "limit": 1})["total"]
        for state in ("pending", "running", "completed", "failed", "cancelled")
    }
    report.line(f"{total} jobs: " + ", ".join(f"{n} {s}" for s, n in by_state.items() if n))
    for job_id, what in ours.items():
        row = found.get(job_id)
        state = row["status"] if row else "NOT LISTED"
        report.line(f"{job_id}  {state:<10} {what}")
    missing = [j for j in ours if j not in found]
    if missing:
        raise StepFailed(f"{len(missing)} of this run's jobs are not in the list")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("AIJOBS_URL") or "http://localhost:8000",
        help="API address (default: $AIJOBS_URL or http://localhost:8000)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds a scikit-learn job may take"
    )
    parser.add_argument(
        "--framework-timeout",
        type=float,
        default=600,
        help="seconds a served job of step 5 may take (deep-learning training on CPU is slow)",
    )
    parser.add_argument("--gpu", action="store_true", help="step 5: PyTorch jobs on GPU queues")
    args = parser.parse_args(argv)

    api = Api(args.url)
    report = Report()
    print(f"aijobs API check against {api.url}")
    state: dict[str, Any] = {"ours": {}}

    def run(number: int, title: str, needs: str | None, action: Any) -> None:
        report.step(number, title)
        started = time.monotonic()
        if needs is not None and needs not in state:
            report.done(title, "SKIPPED (an earlier step failed)", started)
            return
        try:
            note = action()
        except StepFailed as exc:
            report.done(title, f"FAIL: {exc}", started)
            if isinstance(exc, Unreachable):
                raise
            return
        report.done(title, f"PASS{f': {note}' if isinstance(note, str) else ''}", started)

    def train() -> None:
        state["training"] = step_train(api, report)
        state["ours"][state["training"]] = "training random_forest (step 2)"

    def monitor() -> None:
        state["model"] = step_monitor(api, report, state["training"], args.timeout)

    def infer() -> None:
        job_id = step_inference(api, report, state["model"], args.timeout)
        state["ours"][job_id] = "inference (step 4)"

    def frameworks() -> str:
        jobs, note = step_frameworks(api, report, args.gpu, args.framework_timeout)
        state["ours"].update(jobs)
        return note

    try:
        run(1, "Health endpoint", None, lambda: step_health(api, report))
        run(2, "Submit a training job", None, train)
        run(3, "Monitor job progress", "training", monitor)
        run(4, "Submit an inference job with the trained model", "model", infer)
        run(5, "Test multiple frameworks", None, frameworks)
        run(6, "List all jobs", None, lambda: step_list(api, report, state["ours"]))
    except Unreachable:
        print("\nThe API is not reachable: start it with `make run` (or `aijobs up`).")
        return 1
    failed = [title for title, outcome in report.results if not outcome.startswith("PASS")]
    print(f"\n{len(report.results) - len(failed)} of 6 steps passed", end="")
    print(f"; failed: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
