"""More of the chaos matrix of docs/protocol.md with real processes: a partition that stops a
worker's renewals, a worker killed in the windows around its child, a Redis AOF that lost its
tail, clocks hours apart, a worker restarted under the same host name and pid, and a job that
takes all the memory its child may have.

Every test ends with every accepted job ended exactly once (invariants.assert_each_ended_once),
then the store's oracle (conftest.check_store). Leases are 3 s unless a test says otherwise.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    QUICK,
    SLOW,
    VERY_SLOW,
    Partition,
    System,
    alive,
    child_pids,
    skewed_clock_env,
    wait_until,
)
from tests.integration.invariants import accepted_commits, assert_each_ended_once
from tests.redis_server import RedisServer

pytestmark = pytest.mark.stores("sqlite", "redis")

LONGER = {**SLOW, "hyperparameters": {"n_estimators": 1500, "random_state": 0}}


def started(system: System, job: str) -> int:
    return len(re.findall(f"job started worker=\\S+ job={job} ", system.worker_log()))


def models_of(system: System, job: str) -> list[dict[str, Any]]:
    return [m for m in system.get("/models").json()["models"] if m["job_id"] == job]


def running_with_child(system: System, job: str) -> list[int]:
    system.wait(job, {"running"}, timeout=60)
    wait_until(lambda: child_pids(job), 30, "training child")
    return child_pids(job)


# -- 5: a partition between a worker and its store ------------------------------------------------
@pytest.mark.slow
@pytest.mark.stores("redis")
def test_a_worker_that_cannot_renew_stops_its_job_before_another_can_take_it(
    system: System,
) -> None:
    # A partition is silence, not a refused connection: calls hang until the socket timeout.
    # Proportions as in production (renew every third of the lease, socket timeout well inside
    # it), scaled down: lease 6 s, socket timeout 1 s.
    system.env_overrides |= {"AIJOBS_LEASE_SECONDS": "6", "AIJOBS_REDIS_SOCKET_TIMEOUT": "1"}
    port = int(system.env["AIJOBS_STORE_URL"].rsplit(":", 1)[1].split("/")[0])
    partition = Partition(port)
    try:
        system.start_api()
        cut_off = system.start_worker(
            "sklearn", env={"AIJOBS_STORE_URL": f"redis://127.0.0.1:{partition.port}/0"}
        )
        job = system.submit("/jobs/training", LONGER)
        first_child = running_with_child(system, job)
        system.start_worker("sklearn")  # connected directly: takes the job once it is free
        partition.cut()
        overlap: list[dict[str, Any]] = []  # moments the re-run existed while ours still ran
        deadline = time.monotonic() + 120
        while (status := system.status(job))["status"] not in ("completed", "failed"):
            if status["attempt"] >= 2 and any(alive(p) for p in first_child):
                overlap.append(status)
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        partition.heal()
        assert overlap == [], overlap[:3]
        assert status["status"] == "completed", status
        assert status["attempt"] == 2, status
        tag = f"worker=\\S+:{cut_off.pid}:\\S+ job={job}"
        assert re.search(f"stopping job {tag} reason=lost", system.worker_log())
        models = models_of(system, job)
        assert len(models) == 1, models
        assert "attempt-2" in models[0]["path"], models
        time.sleep(2)  # after the heal, the cut-off worker must not commit anything late
        assert not re.search(f"job finish {tag} accepted=True", system.worker_log())
        assert cut_off.poll() is None
        assert_each_ended_once(system, [job])
    finally:
        partition.close()


@pytest.mark.slow
@pytest.mark.stores("sqlite")
def test_a_worker_that_cannot_write_to_sqlite_stops_its_job_before_another_can_take_it(
    system: System,
) -> None:
    """SQLite's partition: another process holds the write lock for longer than a lease, and
    a renewal waits on it for the busy timeout (10 s), longer than the lease (3 s). The worker
    must not wait for its renewal to fail: its child is gone before the lease runs out, so no
    other worker can ever run the job beside it."""
    system.start_api()
    stuck = system.start_worker("sklearn")
    job = system.submit("/jobs/training", LONGER)
    first_child = running_with_child(system, job)
    system.start_worker("sklearn")  # takes the job once it is free
    lock = sqlite3.connect(system.home / "aijobs.db", timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # every writer waits now: renewals, rescues, claims
        time.sleep(3 + 1.5)  # the lease, and then some: it ran out with nobody able to write
        still = [p for p in first_child if alive(p)]
        lock.rollback()
    finally:
        lock.close()
    assert still == [], "the training child outlived its lease"
    done = system.wait(job, timeout=120)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2, done  # rescued once the lock was gone, and run again
    tag = f"worker=\\S+:{stuck.pid}:\\S+ job={job}"
    assert re.search(f"stopping job {tag} reason=lost", system.worker_log())
    models = models_of(system, job)  # one result, the second attempt's (either worker's)
    assert len(models) == 1, models
    assert "attempt-2" in models[0]["path"], models
    assert_each_ended_once(system, [job])


# -- 4: a worker killed between the claim and the child, and between the child and the finish -----
@pytest.mark.stores("redis")
def test_kill_between_the_claim_and_the_child_spawn(system: System) -> None:
    """On Redis a job submitted to an idle worker is claimed for it by the submit itself: a
    worker frozen in its wait holds a claim it has not acted on, the window exactly."""
    system.start_api()
    frozen = system.start_worker("sklearn")
    jobs: list[str] = []
    for _ in range(5):
        time.sleep(1.5)  # idle: waiting on the store for work
        frozen.send_signal(signal.SIGSTOP)
        jobs.append(job := system.submit("/jobs/training", QUICK))
        time.sleep(0.5)
        if system.status(job)["status"] == "running":
            break
        frozen.send_signal(signal.SIGCONT)  # not handed over this time: let it run, try again
        assert system.wait(job, timeout=90)["status"] == "completed"
    else:
        pytest.fail("no submission was handed to the frozen worker in 5 tries")
    assert child_pids(job) == []  # claimed, and no child: the window
    frozen.send_signal(signal.SIGKILL)
    frozen.wait()
    system.start_worker("sklearn")
    done = system.wait(job, timeout=90)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2, done
    assert started(system, job) == 1  # started only by the worker that lived
    assert_each_ended_once(system, jobs)


@pytest.mark.stores("sqlite")
def test_kill_between_the_claim_and_the_child_spawn_on_sqlite(system: System) -> None:
    """On SQLite the worker claims for itself and spawns the child at once: the test watches the
    file and freezes the worker the moment its claim is committed, until it catches it with no
    child yet."""
    system.start_api()
    frozen = system.start_worker("sklearn")
    db = sqlite3.connect(f"file:{system.home / 'aijobs.db'}?mode=ro", uri=True, timeout=10)
    jobs: list[str] = []
    try:
        for _ in range(5):
            jobs.append(job := system.submit("/jobs/training", QUICK))
            deadline = time.monotonic() + 60
            while not db.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND attempt > 0", (job,)
            ).fetchall():
                assert time.monotonic() < deadline, "the worker never claimed the job"
            frozen.send_signal(signal.SIGSTOP)  # claimed a moment ago
            if child_pids(job) == []:
                break
            frozen.send_signal(signal.SIGCONT)  # its child was quicker: let it run, try again
            assert system.wait(job, timeout=90)["status"] == "completed"
        else:
            pytest.fail("never caught the worker between its claim and its child in 5 tries")
    finally:
        db.close()
    killed_then_run_again(system, frozen, job, jobs)


def test_kill_between_the_child_exit_and_the_finish(system: System) -> None:
    system.start_api()
    frozen = system.start_worker("sklearn")
    job = system.submit("/jobs/training", SLOW)
    first_child = running_with_child(system, job)
    frozen.send_signal(signal.SIGSTOP)
    # the child trains on and exits with its model written; its parent never reads it
    wait_until(lambda: not any(alive(p) for p in first_child), 120, "the child to finish")
    killed_then_run_again(system, frozen, job, [job])


def killed_then_run_again(
    system: System, frozen: subprocess.Popen[bytes], job: str, jobs: list[str]
) -> None:
    """SIGKILL the frozen worker that holds `job`: another worker runs it again, and only that
    second attempt's result is committed."""
    frozen.send_signal(signal.SIGKILL)
    frozen.wait()
    system.start_worker("sklearn")
    done = system.wait(job, timeout=120)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2, done
    models = models_of(system, job)
    assert len(models) == 1, models
    assert "attempt-2" in models[0]["path"], models
    assert_each_ended_once(system, jobs)


# -- 7: the tail of Redis's AOF lost -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.stores("redis")
def test_a_lost_aof_tail_converges(tmp_path: Path, demo_root: Path) -> None:
    """The claim is in the lost tail: after the restart the job is pending again while its
    worker still runs it. The worker must hear LOST, stop its child, and the job run once more
    to one committed result; no index may be orphaned."""
    from tests.integration.conftest import check_store

    redis = RedisServer(tmp_path / "redis")
    redis.start()
    system = System(home=tmp_path / "var", data=demo_root)
    system.env_overrides |= {"AIJOBS_STORE_URL": redis.url, "AIJOBS_REDIS_PREFIX": "aof"}
    try:
        system.start_api()
        job = system.submit("/jobs/training", LONGER)  # acknowledged: fsynced (always)
        (aof,) = (tmp_path / "redis" / "appendonlydir").glob("*.incr.aof")
        kept = aof.stat().st_size
        system.start_worker("sklearn")
        first_child = running_with_child(system, job)
        redis.stop(signal.SIGKILL)
        with open(aof, "r+b") as f:  # everything after the submit is gone, the claim too
            f.truncate(kept)
        redis.start()
        # the worker learns its claim is gone and stops the child it started for it
        wait_until(lambda: not any(alive(p) for p in first_child), 60, "the stale child to stop")
        done = system.wait(job, timeout=180)
        assert done["status"] == "completed", done
        assert len(models_of(system, job)) == 1
        assert_each_ended_once(system, [job])
    finally:
        system.stop_all()
        check_store(system)
        redis.stop()


# -- 14: clocks an hour apart ------------------------------------------------------------------
@pytest.mark.slow
def test_worker_clocks_an_hour_off_change_nothing(system: System, tmp_path: Path) -> None:
    system.start_api()
    for skew in (3600.0, -3600.0):
        env = skewed_clock_env(tmp_path, skew)
        system.start_worker("sklearn", env=env)
    # each worker takes one of two jobs that outlive four leases, then times them out
    jobs = [system.submit("/jobs/training", {**VERY_SLOW, "timeout_seconds": 12}) for _ in "ab"]
    finals = [system.wait(job, timeout=120) for job in jobs]
    quick = system.submit("/jobs/training", QUICK)
    assert system.wait(quick, timeout=90)["status"] == "completed"
    for job, final in zip(jobs, finals, strict=True):
        assert final["status"] == "failed", final
        assert "timed out after 12 seconds" in final["error"], final
        assert final["attempt"] == 1, final
        assert started(system, job) == 1
    assert "rescued expired lease" not in system.worker_log()
    assert len(system.get("/workers").json()["workers"]) == 2  # both alive to the API
    assert_each_ended_once(system, [*jobs, quick])


# -- 18: a worker restarted with the same host name and pid ------------------------------------
def pod(name: str) -> list[str]:
    """Run a command as in a container: its own PID namespace (it is pid 1) and host name."""
    # --kill-child: stopping the wrapper (the harness's SIGTERM) ends the whole namespace too
    namespaces = ["unshare", "--pid", "--fork", "--kill-child", "--uts", "--"]
    return [*namespaces, "sh", "-c", f'hostname {name} && exec "$@"', "sh"]


def namespace_pid(wrapper: subprocess.Popen[bytes]) -> int:
    """The real pid of the process unshare forked (pid 1 inside its namespace)."""
    children = Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split()
    return int(children[0])


def test_a_worker_restarted_with_the_same_host_name_and_pid(system: System) -> None:
    probe = subprocess.run([*pod("probe"), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no PID and UTS namespaces here: {probe.stderr.decode()[-200:]}")
    system.start_api()
    first = system.start_worker("sklearn", wrapper=pod("pod-0"))
    (identity,) = [w for w in system.get("/workers").json()["workers"]]
    assert (identity["host"], identity["pid"]) == ("pod-0", 1)
    job = system.submit("/jobs/training", SLOW)
    running_with_child(system, job)
    os.kill(namespace_pid(first), signal.SIGKILL)  # its children die with their namespace
    first.wait()
    system.start_worker("sklearn", wrapper=pod("pod-0"))  # the same name, pid 1 again
    done = system.wait(job, timeout=120)
    assert done["status"] == "completed", done
    assert done["attempt"] == 2, done  # the old lease expired although the name came back
    wait_until(
        lambda: len(system.get("/workers").json()["workers"]) == 1, 30, "the old heartbeat to end"
    )
    (live,) = system.get("/workers").json()["workers"]
    assert (live["host"], live["pid"]) == ("pod-0", 1)
    assert live["worker_id"] != identity["worker_id"]
    assert_each_ended_once(system, [job])


# -- 17: a job that takes all the memory of its child ------------------------------------------
MEMORY_LIMIT = 1536 * 2**20  # address space for the worker and each child (RLIMIT_AS)


@pytest.mark.slow
def test_a_job_that_exhausts_its_childs_memory_fails_alone(system: System, demo_root: Path) -> None:
    # One category and one class per row: multinomial logistic regression on it wants a weight
    # matrix of rows x rows, and its optimiser ten more: far past the limit, within seconds.
    hog = demo_root / "memory_hog.csv"
    if not hog.exists():
        hog.write_text("key,label\n" + "".join(f"k{i},c{i}\n" for i in range(3000)))
    system.start_api()
    worker = system.start_worker("sklearn", wrapper=["prlimit", f"--as={MEMORY_LIMIT}", "--"])
    before = system.submit("/jobs/training", QUICK)
    poison = system.submit(
        "/jobs/training", {"model_type": "logistic_regression", "data_path": hog.name}
    )
    after = system.submit("/jobs/training", QUICK)
    failed = system.wait(poison, timeout=240)
    assert failed["status"] == "failed", failed
    assert "memory" in failed["error"].lower(), failed
    for job in (before, after):
        assert system.wait(job, timeout=120)["status"] == "completed"
    assert worker.poll() is None  # the worker lives on
    assert accepted_commits(system.worker_log())[poison] == 0
    assert_each_ended_once(system, [before, poison, after])
