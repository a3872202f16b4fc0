"""The job commands of the command line, and scripts/test_api.py, against the real API and a real
scikit-learn worker. One running system serves the whole module (`live`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aijobs.cli import app
from aijobs.cli.options import parse_pairs
from tests.integration.harness import System, free_port

REPO = Path(__file__).resolve().parents[2]
IRIS = "/data/tabular_data.csv"


# -- CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def cli(live: System, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIJOBS_URL", live.url)
    runner = CliRunner()

    def run(*args: str, code: int = 0, stdin: str | None = None) -> Any:
        result = runner.invoke(app, list(args), input=stdin)
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result

    return run


def test_parse_pairs_reads_json_values_else_strings() -> None:
    parsed = parse_pairs(
        ["epochs=2", "lr=0.1", "name=resnet-50", "flag=true", "layers=[1, 2]", "s=a=b"], "--hp"
    )
    assert parsed == {
        "epochs": 2,
        "lr": 0.1,
        "name": "resnet-50",
        "flag": True,
        "layers": [1, 2],
        "s": "a=b",
    }
    assert parse_pairs(None, "--hp") is None


def test_cli_train_follow_then_infer(cli: Any) -> None:
    submitted = json.loads(
        cli(
            "submit", "training", "--model-type", "random_forest", "--data", IRIS,
            "--hp", "n_estimators=20", "--hp", "max_depth=4", "--framework", "sklearn",
            "--priority", "5", "--timeout", "120", "--json",
        ).stdout
    )  # fmt: skip
    assert submitted["status"] == "queued"
    assert submitted["queue"] == "sklearn"
    job = submitted["job_id"]
    followed = cli("wait", job)
    assert f"{job} completed" in followed.stdout
    assert "accuracy" in followed.stdout
    assert job in followed.stderr  # without a terminal: one progress line per change
    done = json.loads(cli("wait", job, "--json").stdout)
    assert done["status"] == "completed"
    assert done["queue"] == "sklearn"
    model = done["result"]["model_id"]
    out = cli(
        "submit", "inference", "--model", model, "--input", "-", "--param", "probability=true",
        "--wait", "--json", stdin="5.1,3.5,1.4,0.2",
    )  # fmt: skip
    inferred = json.loads(out.stdout)
    assert inferred["result"]["predictions"] == ["setosa"]
    assert "probabilities" in inferred["result"]

    human = cli("status", job).stdout
    assert "completed" in human
    assert model in human
    assert "accuracy" in human
    listed = cli("list", "--limit", "3").stdout
    assert inferred["job_id"] in listed
    assert "of" in listed
    page = json.loads(cli("--json", "list", "--status", "completed", "--limit", "1000").stdout)
    assert {job, inferred["job_id"]} <= {j["job_id"] for j in page["jobs"]}
    assert model in cli("models").stdout
    assert "sklearn" in cli("queues").stdout
    assert "tensorflow" in cli("queues").stdout
    assert cli("logs", job).stdout.strip()
    assert cli("logs", "-f", job).stdout.strip()


def test_cli_exit_codes(cli: Any, live: System) -> None:
    failed = cli(
        "submit", "training", "-m", "random_forest", "-d", IRIS, "--hp", "target_column=nope",
        "--wait", code=1,
    )  # fmt: skip
    assert "failed" in failed.stdout
    assert "nope" in failed.stdout
    refused = cli(  # refused at submission, before any worker sees it
        "submit", "training", "-m", "random_forest", "-d", IRIS, "--hp", "not_a_param=1", code=2
    )  # fmt: skip
    assert "unknown hyperparameter: not_a_param" in refused.stderr

    job = json.loads(
        cli("submit", "training", "-m", "inception", "-d", "/data/cifar10", "--json").stdout
    )["job_id"]
    timed_out = cli("wait", job, "--timeout", "0.5", code=4)
    assert "did not complete" in timed_out.stderr
    assert "cancelled" in cli("cancel", job).stdout
    assert "cancelled" in cli("wait", job, code=1).stdout  # a cancelled job is not a success
    again = cli("cancel", job, code=2)
    assert "Job cannot be cancelled" in again.stderr
    missing = cli("status", "job_00000000-0000-4000-8000-000000000000", code=2)
    assert "Job not found" in missing.stderr
    envelope = json.loads(cli("status", "job_nope", "--json", code=2).stderr)
    assert envelope["status_code"] == 404
    assert envelope["error"] == "Job not found"
    invalid = cli("submit", "training", "-m", "svm", "-d", IRIS, "--priority", "5000", code=2)
    assert "priority" in invalid.stderr
    assert (
        "KEY=VALUE"
        in cli("submit", "training", "-m", "svm", "-d", IRIS, "--hp", "x", code=2).output
    )
    down = cli("--url", f"http://127.0.0.1:{free_port()}", "queues", code=3)
    assert "cannot reach the aijobs API" in down.stderr


def test_cli_as_installed(live: System) -> None:
    """`python -m aijobs` as a user runs it: --url and exit codes from a real process."""
    env = {**os.environ, "AIJOBS_URL": "http://127.0.0.1:9"}
    run = [sys.executable, "-m", "aijobs"]
    ok = subprocess.run(
        [*run, "--url", live.url, "queues", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert {q["queue"] for q in json.loads(ok.stdout)["queues"]} >= {"sklearn", "tensorflow"}
    down = subprocess.run([*run, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 3
    assert "cannot reach" in down.stderr


# -- scripts/test_api.py -----------------------------------------------------------------------
def test_the_spec_test_script_passes(live: System) -> None:
    script = REPO / "scripts" / "test_api.py"
    done = subprocess.run(
        [sys.executable, str(script), live.url], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for n in range(1, 7):
        assert f"[{n}/6]" in out
    assert out.rstrip().endswith("6 of 6 steps passed")
    assert "no worker serves it, the job would wait -> cancelled to clean up" in out
    assert "sklearn      logistic_regression  -> queue sklearn: served, completed" in out


def test_the_spec_test_script_fails_when_the_api_is_down() -> None:
    script = REPO / "scripts" / "test_api.py"
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, str(script), url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "FAIL: cannot reach" in done.stdout
    assert "make run" in done.stdout
