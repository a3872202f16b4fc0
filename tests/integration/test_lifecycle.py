"""Cancel, timeouts, priorities, crashes and restarts, with real processes killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.harness import QUICK, SLOW, VERY_SLOW, System, child_pids, wait_until

pytestmark = pytest.mark.stores("sqlite", "redis")


def test_cancel_pending_job(running: System) -> None:
    job = running.submit("/jobs/training", {"model_type": "inception", "data_path": "cifar10"})
    r = running.delete(f"/jobs/{job}")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert r.json()["error"] == "Job cancelled by user"
    again = running.delete(f"/jobs/{job}")
    assert again.status_code == 400
    assert again.json()["status_code"] == 400


def test_cancel_running_job_kills_child_and_worker_continues(running: System) -> None:
    job = running.submit("/jobs/training", VERY_SLOW)
    running.wait(job, {"running"}, timeout=30)
    wait_until(lambda: child_pids(job), 10, "training child to start")
    pids = child_pids(job)
    r = running.delete(f"/jobs/{job}")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    wait_until(lambda: not any(_alive(p) for p in pids), 5, "child to be killed")
    time.sleep(1)
    assert running.status(job)["status"] == "cancelled"
    nxt = running.wait(running.submit("/jobs/training", QUICK))
    assert nxt["status"] == "completed"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_timeout_fails_job_with_clear_error(running: System) -> None:
    job = running.submit("/jobs/training", {**VERY_SLOW, "timeout_seconds": 2})
    done = running.wait(job, timeout=30)
    assert done["status"] == "failed"
    assert "timed out after 2 seconds" in done["error"]
    assert not child_pids(job)


def test_priority_then_fifo(system: System) -> None:
    system.start_api()
    low1 = system.submit("/jobs/training", {**QUICK, "priority": 0})
    low2 = system.submit("/jobs/training", {**QUICK, "priority": 0})
    high = system.submit("/jobs/training", {**QUICK, "priority": 5})
    system.start_worker("sklearn")
    started = {j: system.wait(j)["started_at"] for j in (low1, low2, high)}
    order = sorted(started, key=lambda j: started[j])
    assert order == [high, low1, low2]


def test_sigkill_worker_mid_job_is_rescued_and_completes_once(system: System) -> None:
    system.start_api()
    worker = system.start_worker("sklearn")
    job = system.submit("/jobs/training", SLOW)
    system.wait(job, {"running"}, timeout=30)
    wait_until(lambda: child_pids(job), 10, "training child")
    first_child = child_pids(job)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    # pdeathsig: the orphaned child dies with its worker instead of running on
    wait_until(lambda: not any(_alive(p) for p in first_child), 5, "orphaned child to die")
    system.start_worker("sklearn")
    done = system.wait(job, timeout=90)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2
    models = system.get("/models").json()["models"]
    assert [m["job_id"] for m in models] == [job]  # one committed result


def test_poison_job_fails_after_max_attempts(system: System) -> None:
    system.env_overrides["AIJOBS_MAX_ATTEMPTS"] = "2"
    system.start_api()
    job = system.submit("/jobs/training", VERY_SLOW)
    for _ in range(2):
        worker = system.start_worker("sklearn")
        system.wait(job, {"running"}, timeout=30)
        wait_until(lambda: child_pids(job), 10, "training child")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        wait_until(lambda: system.status(job)["status"] != "running", 20, "rescue")
    done = system.status(job)
    assert done["status"] == "failed"
    assert "worker lost" in done["error"]


def test_restart_api_and_worker_loses_nothing(system: System) -> None:
    system.start_api()
    worker = system.start_worker("sklearn")
    jobs = [system.submit("/jobs/training", SLOW)]
    system.wait(jobs[0], {"running"}, timeout=30)
    jobs += [system.submit("/jobs/training", QUICK) for _ in range(3)]
    worker.send_signal(signal.SIGKILL)
    system.stop(system.api, signal.SIGKILL)
    system.start_api()
    system.start_worker("sklearn")
    for job in jobs:
        assert system.wait(job, timeout=120)["status"] == "completed"
    assert system.get("/jobs").json()["total"] == len(jobs)


def test_sigterm_lets_running_job_finish(system: System) -> None:
    # A grace period no loaded machine runs out of: the job must end by finishing, not be
    # handed back (which the harness's short default would do on a slow, busy machine).
    system.env_overrides["AIJOBS_SHUTDOWN_GRACE_SECONDS"] = "120"
    system.start_api()
    worker = system.start_worker("sklearn")
    job = system.submit("/jobs/training", SLOW)
    system.wait(job, {"running"}, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(150) == 0
    assert system.status(job)["status"] == "completed"


def test_worker_refuses_queues_it_cannot_serve(system: System) -> None:
    env = {**system.env, "AIJOBS_ALLOW_MISSING_GPU": "0"}
    cases = (
        (["--queue", "nope"], "unknown queue"),
        (["--queue", "sklearn", "--runtime", "no_such_module:Trainer"], "nor importable"),
        (["--queue", "sklearn", "--runtime", "not-an-entry-point"], "nor importable"),
    )
    for args, words in cases:
        out = subprocess.run(
            [sys.executable, "-m", "aijobs", "worker", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert words in out.stderr, out.stderr
    if not os.path.exists("/dev/nvidia0"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "aijobs",
                "worker",
                "--queue",
                "sklearn",
                "--queue",
                "pytorch-2.1-gpu",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2
        assert "needs a GPU" in out.stderr
