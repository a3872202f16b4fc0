"""Chaos with real processes (the failures docs/protocol.md guards against), on both stores
where the fault is not Redis's own.

Every test ends with the oracle (conftest.check_store): every non-terminal job in exactly the
index its state names, no index naming a missing job, counts exact. Each also checks that every
accepted job ended exactly once: one terminal state, and one accepted commit in the workers' log.
Leases are 3 s (harness), so a lost worker's job is rescued within about 4 s.

SIGKILL of a worker mid-job and a poison job that kills its worker are in test_lifecycle.py,
which runs on both stores too.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import check_store
from tests.integration.harness import (
    QUICK,
    SLOW,
    TERMINAL,
    VERY_SLOW,
    System,
    alive,
    child_pids,
    wait_until,
)
from tests.integration.invariants import logged_commits
from tests.redis_server import RedisServer

pytestmark = pytest.mark.stores("sqlite", "redis")  # redis_system tests: Redis only

IRIS = "5.1,3.5,1.4,0.2"


@pytest.fixture
def redis_system(tmp_path: Path, demo_root: Path, own_redis: RedisServer) -> Iterator[System]:
    """The system on a redis-server of its own, which the test may kill and restart."""
    s = System(home=tmp_path / "var", data=demo_root)
    s.env_overrides["AIJOBS_STORE_URL"] = own_redis.url
    s.env_overrides["AIJOBS_REDIS_PREFIX"] = "chaos"
    yield s
    s.stop_all()
    if own_redis.proc is None:
        own_redis.start()
    check_store(s)


# -- helpers -------------------------------------------------------------------------------------
def commits(system: System, *completed: str) -> Counter[str]:
    """Accepted terminal commits per job, from the workers' log (finish accepted=True): one line
    per training job, one per batch of inference jobs; read once it names the `completed`."""
    return logged_commits(system, completed)


def submit_retrying(system: System, path: str, body: dict[str, Any], timeout: float = 60) -> str:
    """A client that retries through outages with one Idempotency-Key, as the SDK does."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            r = httpx.post(
                system.url + path, json=body, headers={"Idempotency-Key": key}, timeout=10
            )
            if r.status_code == 200:
                job_id: str = r.json()["job_id"]
                return job_id
            assert r.status_code == 503, r.text  # down: the envelope, never a 500
            assert r.json()["status_code"] == 503
        if time.monotonic() > deadline:
            raise AssertionError(f"no submission accepted within {timeout}s")
        time.sleep(0.1)


def wait_retrying(system: System, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            r = system.get(f"/jobs/{job_id}/status")
            if r.status_code == 200 and r.json()["status"] in TERMINAL:
                body: dict[str, Any] = r.json()
                return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} did not finish within {timeout}s")
        time.sleep(0.1)


def trained_model(system: System) -> tuple[str, str]:
    """(training job, model id) of a quick model, for bursts of fast inference jobs."""
    job = system.submit("/jobs/training", QUICK)
    done = system.wait(job, timeout=90)
    assert done["status"] == "completed", done
    return job, done["result"]["model_id"]


def all_job_ids(system: System) -> list[str]:
    body = system.get("/jobs", params={"limit": 1000}).json()
    ids = [j["job_id"] for j in body["jobs"]]
    assert len(ids) == body["total"] == len(set(ids))
    return ids


# -- worker faults -------------------------------------------------------------------------------
def test_sigstop_past_the_lease_then_sigcont_late_finish_refused(system: System) -> None:
    system.start_api()
    stopped = system.start_worker("sklearn")
    job = system.submit("/jobs/training", SLOW)
    system.wait(job, {"running"}, timeout=60)
    wait_until(lambda: child_pids(job), 20, "training child")
    first_child = child_pids(job)
    stopped.send_signal(signal.SIGSTOP)
    try:
        # started only now: a worker that is slow to start (a loaded machine) must not find
        # the job finished before its owner was frozen
        system.start_worker("sklearn")  # idle until the job is rescued
        # the lease runs out with its owner frozen: rescued, and the other worker runs it
        wait_until(lambda: system.status(job)["attempt"] >= 2, 60, "rescue and re-claim")
        # the frozen worker's child finishes meanwhile, so that on waking the worker has a
        # result in hand (it then either hears LOST first or has its finish refused)
        wait_until(lambda: not any(alive(p) for p in first_child), 90, "first child to end")
    finally:
        stopped.send_signal(signal.SIGCONT)
    done = system.wait(job, timeout=120)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2, done
    models = system.get("/models").json()["models"]
    assert [m["job_id"] for m in models] == [job]  # one committed result, the second attempt's
    assert "attempt-2" in models[0]["path"]
    assert commits(system, job)[job] == 1
    # the thawed worker learned it had lost the job: fenced on renew, or its finish refused
    tag = f"worker=\\S+:{stopped.pid}:\\S+ job={job}"
    fenced = f"(stopping job {tag} reason=lost|job finish {tag} accepted=False)"
    wait_until(lambda: re.search(fenced, system.worker_log()), 30, "the stale worker to be fenced")
    assert not re.search(f"job finish {tag} accepted=True", system.worker_log())
    assert stopped.poll() is None  # and it lives on, serving the queue


def test_sigkill_the_child_only_retries_without_a_stall(system: System) -> None:
    system.start_api()
    system.start_worker("sklearn")
    job = system.submit("/jobs/training", SLOW)
    system.wait(job, {"running"}, timeout=60)
    wait_until(lambda: child_pids(job), 20, "training child")
    for pid in child_pids(job):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    done = system.wait(job, timeout=120)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2, done
    assert commits(system, job)[job] == 1
    killed = "accepted=True error=training process was killed by signal SIGKILL"
    assert re.search(f"job fail worker=\\S+ job={job} {killed}", system.worker_log())
    # the worker itself handed the job back at once: no lease ran out, nothing was rescued
    assert "rescued expired lease" not in (system.home / "api.log").read_text()
    assert "rescued expired lease" not in system.worker_log()


def test_a_job_longer_than_many_leases_is_never_run_twice(system: System) -> None:
    system.start_api()
    system.start_worker("sklearn")
    system.start_worker("sklearn")  # a second worker, ready to take the job were it rescued
    job = system.submit("/jobs/training", {**VERY_SLOW, "timeout_seconds": 12})  # 4 leases
    done = system.wait(job, timeout=90)
    assert done["status"] == "failed"
    assert "timed out after 12 seconds" in done["error"]
    assert done["attempt"] == 1
    assert len(re.findall(f"job started worker=\\S+ job={job} ", system.worker_log())) == 1
    assert "rescued expired lease" not in (system.home / "api.log").read_text()


def test_cancel_racing_the_claim(system: System) -> None:
    system.start_api()
    system.start_worker("sklearn", concurrency=2)
    rng = random.Random(7)
    outcomes: dict[str, int] = {}
    for _ in range(12):
        job = system.submit("/jobs/training", QUICK)
        time.sleep(rng.choice([0, 0, 0.005, 0.02, 0.05, 0.3]))
        outcomes[job] = system.delete(f"/jobs/{job}").status_code
    finals = {job: system.wait(job, timeout=120) for job in outcomes}
    models = {m["job_id"] for m in system.get("/models").json()["models"]}
    for job, code in outcomes.items():
        final = finals[job]
        if code == 200:  # the cancel won, whether before or after the claim: it sticks
            assert final["status"] == "cancelled", final
            assert final["result"] is None, final
            assert job not in models
            assert commits(system)[job] == 0
        else:  # the job had already finished
            assert code == 400, (code, final)
            assert final["status"] == "completed", (code, final)
            assert commits(system, job)[job] == 1
    assert any(code == 200 for code in outcomes.values())
    wait_until(lambda: not any(child_pids(j) for j in outcomes), 30, "cancelled children gone")
    time.sleep(2)  # a late write by a worker would land now: none may
    assert {j: system.status(j)["status"] for j in outcomes} == {
        j: f["status"] for j, f in finals.items()
    }
    assert system.workers[0].poll() is None


# -- Redis and API faults ------------------------------------------------------------------------
def test_api_answers_503_while_redis_is_down_and_recovers_by_itself(
    redis_system: System, own_redis: RedisServer
) -> None:
    system = redis_system
    system.start_api()
    kept = system.submit("/jobs/training", QUICK)
    own_redis.stop(signal.SIGKILL)
    for method, path, body in (
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{kept}/status", None),
        ("POST", "/jobs/training", QUICK),
        ("DELETE", f"/jobs/{kept}", None),
        ("GET", "/queues", None),
    ):
        t0 = time.monotonic()
        r = httpx.request(method, system.url + path, json=body, timeout=15)
        assert time.monotonic() - t0 < 10, (method, path)  # an answer, not a hang
        assert r.status_code == 503, (method, path, r.text)
        assert r.json() == {
            "error": "Service unavailable",
            "detail": r.json()["detail"],
            "status_code": 503,
        }
        assert "Redis" in r.json()["detail"]
        assert r.headers["Retry-After"]
    assert system.get("/health").status_code == 200  # the API itself is alive
    down = system.get("/health/redis")
    assert down.status_code == 503
    assert down.json()["healthy"] is False
    own_redis.start()
    wait_until(lambda: system.get("/health/redis").status_code == 200, 20, "recovery")
    health = system.get("/health/redis").json()
    assert health["store"] == "redis"
    assert health["persistence"]["aof_enabled"] is True
    assert system.status(kept)["status"] == "pending"  # acknowledged before the crash: kept
    system.start_worker("sklearn")
    assert system.wait(kept, timeout=90)["status"] == "completed"


def test_redis_restart_during_a_burst_loses_nothing(
    redis_system: System, own_redis: RedisServer
) -> None:
    system = redis_system
    system.start_api()
    system.start_worker("sklearn")
    system.start_worker("sklearn")
    training, model = trained_model(system)
    accepted: list[str] = []
    done = threading.Event()

    def client() -> None:
        for i in range(80):
            body = {"model_id": model, "input_data": IRIS}
            accepted.append(submit_retrying(system, "/jobs/inference", body))
            if i % 10 == 0:
                time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: len(accepted) >= 25, 60, "the burst to get going")
    own_redis.restart(signal.SIGKILL, down_for=1.5)  # a crash; AOF (fsync always) replays
    thread.join(180)
    assert done.is_set()
    for job in accepted:
        final = wait_retrying(system, job)
        assert final["status"] == "completed", final
        assert commits(system, job)[job] == 1, job
    assert len(set(accepted)) == len(accepted) == 80
    assert set(all_job_ids(system)) == {*accepted, training}  # nothing lost, nothing doubled


def test_api_restart_during_a_burst_loses_and_duplicates_nothing(system: System) -> None:
    system.start_api()
    system.start_worker("sklearn")
    training, model = trained_model(system)
    accepted: list[str] = []
    done = threading.Event()

    def client() -> None:
        for _ in range(60):
            accepted.append(
                submit_retrying(system, "/jobs/inference", {"model_id": model, "input_data": IRIS})
            )
        done.set()

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: len(accepted) >= 20, 60, "the burst to get going")
    system.stop(system.api, signal.SIGKILL)
    system.start_api()
    thread.join(180)
    assert done.is_set()
    assert len(set(accepted)) == 60
    for job in accepted:
        assert wait_retrying(system, job)["status"] == "completed"
        assert commits(system, job)[job] == 1, job
    assert set(all_job_ids(system)) == {*accepted, training}  # nothing lost, nothing doubled
