"""Every script in bench/ and scripts/ runs end to end at its smallest sizes, so that a change
elsewhere cannot break one silently.

Each runs as its own process, as a user runs it, with the real server, workers and redis-server
it starts; only the sizes are tiny. Where a script needs what a CI machine lacks, the part that
runs without it is smoked: the GPU scripts on the CPU (--dry-run-on-cpu), the peer benchmark
with aijobs and its baselines alone (the peers need a virtual environment of their own, built
from the network),
and the peers' shared protocol (bench/peers/_common.py) through the bare redis-py adapter, which
needs nothing but redis-py.
scripts/test_api.py runs against a live system in tests/integration/test_clients.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Smoke:
    script: str
    args: str  # split on spaces, then filled in
    prints: str  # a line of the script's result table or summary
    timeout: float = 120
    marks: tuple[pytest.MarkDecorator, ...] = field(default_factory=tuple)
    name: str = ""  # the test id, where one script runs more than once; else its stem

    @property
    def id(self) -> str:
        return self.name or Path(self.script).stem


# {out}, {port}, {redis_url} (the session's shared Redis) and {own_redis_url} (a Redis of the
# test's own, for a script that flushes its DB) are filled in per run.
SMOKES = [
    Smoke(
        "bench/bench_api.py",
        "--submissions 20 --inferences 5 --runs 1",
        "model.predict p50",
    ),
    Smoke("bench/bench_list.py", "--jobs 2000 --runs 5", "(raw) COUNT(*) all jobs"),
    Smoke(
        "bench/bench_redis.py",
        "--jobs 50 --fill 2000 --runs 5",
        "claim(all queues) + finish",
    ),
    Smoke(
        "bench/bench_rtt_floor.py",
        "--redis-url {redis_url} --round-trips 20 --runs 1",
        "redis-py blocking  round-trip floor p50",
    ),
    Smoke(
        "bench/bench_submit_floor.py",
        "--redis-url {redis_url} --calls 50 --runs 1",
        "RedisStore.submit",
    ),
    Smoke(
        "bench/bench_peers.py",  # --out: not over the committed bench/results
        "--only aijobs --runs 1 --jobs 20 --round-trips 11 --out {out}",  # with its baselines
        "| aijobs-functions-api-child (baseline) |",  # a row only a run that succeeded prints
    ),
    Smoke(
        "bench/peers/redispy_bench.py",  # drain, end to end with CPU per job, round trips
        "--redis-url {own_redis_url} --jobs 20 --round-trips 11",
        '"redis_cpu_ms_per_job": ',
        name="peer-protocol",
    ),
    *(
        Smoke(
            "bench/soak.py",
            f"--store {store} --jobs 60 --workers 2 --clients 2 --kill-every 8",
            "  lost         0\n",
            timeout=300,
            marks=(pytest.mark.slow,),
            name=f"soak-{store}",
        )
        for store in ("sqlite", "redis")
    ),
    Smoke(
        "bench/bench_torch.py",
        "--runs 1 --epochs 1 --models gpt --job gpt --poll 0",
        "API / in-process =",
        timeout=300,
        marks=(pytest.mark.torch, pytest.mark.slow),
    ),
    Smoke(
        "bench/bench_models.py",
        "--models logistic_regression --runs 2",
        "| logistic_regression | tabular_data.csv | defaults | accuracy |",
        timeout=300,
    ),
    Smoke(
        "bench/bench_keras.py",
        "--runs 1 --epochs 1",
        "API / script =",
        timeout=600,
        marks=(pytest.mark.tensorflow, pytest.mark.slow),
    ),
    Smoke("scripts/settings_docs.py", "--check", "docs/settings.md is up to date"),
    Smoke(
        "scripts/gpu_check.py",
        "--dry-run-on-cpu --only gpt --out {out}",
        "all ok: True",
        timeout=300,
        marks=(pytest.mark.torch, pytest.mark.slow),
    ),
    Smoke(
        "scripts/gpu_e2e.py",
        "--dry-run-on-cpu --only gpt --out {out} --port {port}",
        "all completed on the CPU (dry run): True",
        timeout=300,
        marks=(pytest.mark.torch, pytest.mark.slow),
    ),
]
# Run by another test or script rather than on their own.
COVERED_ELSEWHERE = {
    "bench/noop_runtime.py": "the runtime of bench/peers/aijobs_bench.py",
    "bench/direct.py": "the direct scripts of bench_torch, bench_keras and bench_models",
    "scripts/test_api.py": "tests/integration/test_clients.py",
    "scripts/gpu_device_run.sh": "test_the_gpu_machine_script_runs_scripts_that_exist",
}
FRAMEWORKS = ("torch", "tensorflow")  # markers named after the module they need


@pytest.mark.parametrize(
    "smoke",
    [pytest.param(s, id=s.id, marks=(*s.marks, pytest.mark.timeout(s.timeout))) for s in SMOKES],
)
def test_script_runs_at_its_smallest_sizes(
    smoke: Smoke, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for mark in smoke.marks:  # find_spec: the script imports it, not this process
        if mark.name in FRAMEWORKS and importlib.util.find_spec(mark.name) is None:
            pytest.skip(f"needs {mark.name}, not installed here")
    fill = {"out": str(tmp_path / "out"), "port": str(free_port())}
    if "{redis_url}" in smoke.args:
        fill["redis_url"] = request.getfixturevalue("redis_server").url
    if "{own_redis_url}" in smoke.args:
        fill["own_redis_url"] = request.getfixturevalue("own_redis").url
    args = [arg.format(**fill) for arg in smoke.args.split()]
    done = subprocess.run(
        [sys.executable, smoke.script, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=smoke.timeout - 10,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert smoke.prints in done.stdout, output[-4000:]


def test_every_script_has_a_smoke_run() -> None:
    scripts = {
        str(path.relative_to(REPO))
        for folder in ("bench", "scripts")
        for path in (REPO / folder).glob("*")
        if path.suffix in (".py", ".sh")
    }
    smoked = {s.script for s in SMOKES if Path(s.script).parent.name in ("bench", "scripts")}
    assert scripts == smoked | set(COVERED_ELSEWHERE)


def test_the_gpu_machine_script_runs_scripts_that_exist() -> None:
    script = REPO / "scripts" / "gpu_device_run.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    named = [word for word in script.read_text().split() if word.startswith("scripts/")]
    assert named, named
    assert all((REPO / path).is_file() for path in named), named
