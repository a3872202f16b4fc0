"""The worker's inference path with real processes: jobs claimed in batches, pipelined to the
one inference child, finished together; a slow job, a crashing child and a busy training slot
each affect only what they must. The worker runs tests/echo_runtime.py (`--runtime`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from aijobs.jobs import JobType, ModelRecord, NewJob
from aijobs.settings import Settings
from aijobs.store import JobStore, open_store
from tests.integration.harness import System, wait_until

pytestmark = pytest.mark.stores()

RUNTIME = "tests.echo_runtime:EchoRuntime"
MODEL_ID = "echo_model_0001"


def _store(system: System) -> JobStore:
    settings = Settings(
        home=system.home,
        store_url=system.env.get("AIJOBS_STORE_URL", ""),
        redis_prefix=system.env.get("AIJOBS_REDIS_PREFIX", "aijobs"),
    )
    return open_store(settings.resolved_store_url, settings=settings)


def _with_store(system: System, action: str, job: NewJob | None = None) -> str:
    """Register the echo model (action "model") or submit `job` straight into the store."""

    async def main() -> str:
        store = _store(system)
        await store.open()
        try:
            if job is not None:
                return (await store.submit(job)).id
            model_dir = system.home / "echo-model"
            model_dir.mkdir(parents=True, exist_ok=True)
            (model_dir / "echo.json").write_text("{}")
            record = ModelRecord(
                model_id=MODEL_ID,
                framework="echo",
                queue="sklearn",
                model_type="echo",
                path=str(model_dir),
                job_id="job_registered_by_the_test",
                created_at=time.time(),
            )
            await store.add_model(record)
            return MODEL_ID
        finally:
            await store.close()

    return asyncio.run(main())


def _infer(system: System, text: str, **extra: object) -> str:
    return system.submit("/jobs/inference", {"model_id": MODEL_ID, "input_data": text, **extra})


@pytest.fixture
def idle(system: System) -> System:
    """The API and a stored model, no worker yet: the jobs submitted before `working` starts
    it are claimed in one batch, queued in its inference child one behind another (a worker
    claims nothing while a batch is with its child)."""
    system.start_api()
    _with_store(system, "model")
    return system


def working(system: System) -> None:
    system.start_worker("sklearn", runtime=RUNTIME)


@pytest.fixture
def echo(idle: System) -> System:
    working(idle)
    return idle


def test_a_burst_of_inference_jobs_completes_each_once_in_one_child(echo: System) -> None:
    jobs = {_infer(echo, f"input {i}"): f"input {i}" for i in range(60)}
    pids = set()
    for job_id, text in jobs.items():
        done = echo.wait(job_id, timeout=60)
        assert done["status"] == "completed", done
        assert done["result"]["echo"] == text
        assert done["attempt"] == 1
        pids.add(done["result"]["pid"])
    assert len(pids) == 1  # the worker's long-lived inference child answered them all


def test_a_slow_inference_job_times_out_alone(idle: System) -> None:
    echo = idle
    slow = _infer(echo, "sleep:30", timeout_seconds=2)
    behind = [_infer(echo, f"after {i}") for i in range(5)]
    working(echo)
    failed = echo.wait(slow, timeout=60)
    assert failed["status"] == "failed", failed
    assert "timed out after 2s" in failed["error"], failed
    for job_id in behind:  # queued behind it in the child: run again, not failed
        done = echo.wait(job_id, timeout=60)
        assert done["status"] == "completed", done
        assert done["attempt"] == 1, done  # none used up


def test_a_job_queued_behind_a_slower_one_is_not_timed_out_for_the_wait(idle: System) -> None:
    echo = idle
    slow = _infer(echo, "sleep:6")
    waiting = _infer(echo, "quick", timeout_seconds=2)  # its limit counts from its own start
    working(echo)
    done = echo.wait(waiting, timeout=60)
    assert done["status"] == "completed", done
    assert done["attempt"] == 1, done
    done = echo.wait(slow, timeout=60)  # the child was not killed for it
    assert done["status"] == "completed", done
    assert done["attempt"] == 1, done


def test_a_crashing_inference_child_fails_its_job_and_spares_the_others(idle: System) -> None:
    echo = idle
    crash = _infer(echo, "exit")
    others = [_infer(echo, f"other {i}") for i in range(5)]
    working(echo)
    failed = echo.wait(crash, timeout=90)
    assert failed["status"] == "failed", failed
    assert "inference process" in failed["error"]
    assert failed["attempt"] == 3
    for job_id in others:
        done = echo.wait(job_id, timeout=60)
        assert done["status"] == "completed", done
        assert done["attempt"] == 1, done  # none used up


def test_cancelling_an_inference_job_spares_the_jobs_behind_it(idle: System) -> None:
    echo = idle
    slow = _infer(echo, "sleep:30")
    behind = [_infer(echo, f"behind {i}") for i in range(3)]
    working(echo)
    echo.wait(slow, {"running"}, timeout=30)  # the others queued behind it in its child
    assert echo.delete(f"/jobs/{slow}").status_code == 200
    assert echo.status(slow)["status"] == "cancelled"
    for job_id in behind:  # the child was killed for the cancel: they run again, no attempt used
        done = echo.wait(job_id, timeout=60)
        assert done["status"] == "completed", done
        assert done["attempt"] == 1, done


def test_inference_runs_while_the_training_slot_is_busy(echo: System) -> None:
    payload = {"model_type": "echo", "data_path": "slow.csv", "hyperparameters": {"sleep": 8}}
    training = _with_store(
        echo,
        "submit",
        NewJob(job_type=JobType.TRAINING, queue="sklearn", payload=payload, model_type="echo"),
    )
    echo.wait(training, {"running"}, timeout=30)
    answered = [echo.wait(_infer(echo, f"meanwhile {i}"), timeout=30) for i in range(3)]
    assert all(a["status"] == "completed" for a in answered), answered
    assert echo.status(training)["status"] == "running"  # they did not wait for it
    assert echo.wait(training, timeout=60)["status"] == "completed"


def test_a_training_job_waiting_for_the_slot_does_not_hold_back_inference(echo: System) -> None:
    payload = {"model_type": "echo", "data_path": "slow.csv", "hyperparameters": {"sleep": 8}}
    training = NewJob(
        job_type=JobType.TRAINING, queue="sklearn", payload=payload, model_type="echo"
    )
    running = _with_store(echo, "submit", training)
    echo.wait(running, {"running"}, timeout=30)
    queued = _with_store(echo, "submit", training)  # heads the queue until the slot is free
    answered = [echo.wait(_infer(echo, f"behind {i}"), timeout=30) for i in range(3)]
    assert all(a["status"] == "completed" for a in answered), answered
    assert echo.status(queued)["status"] == "pending"  # they did not wait for it
    assert echo.wait(queued, timeout=90)["status"] == "completed"


def test_an_answer_too_big_to_pass_fails_its_job_and_spares_the_others(echo: System) -> None:
    big = _infer(echo, f"big:{20 * 2**20}")  # a 20 MiB answer
    failed = echo.wait(big, timeout=60)
    assert failed["status"] == "failed", failed
    assert "over the limit of 16 MiB" in failed["error"], failed
    for job_id in [_infer(echo, f"after {i}") for i in range(3)]:
        done = echo.wait(job_id, timeout=30)
        assert done["status"] == "completed", done


def _post_raw(system: System, path: str, body: str) -> str:
    """A JSON body as written, escapes included (a lone surrogate cannot be encoded as UTF-8)."""
    r = system.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def test_text_that_cannot_be_encoded_fails_only_its_own_job(echo: System) -> None:
    slow = _infer(echo, "sleep:2")
    echo.wait(slow, {"running"}, timeout=30)
    bad = _post_raw(
        echo,
        "/jobs/inference",
        f'{{"model_id": "{MODEL_ID}", "input_data": "x", "parameters": {{"fail": "\\ud800"}}}}',
    )
    good = [_infer(echo, f"good {i}") for i in range(3)]  # held in the same batch as the bad one
    failed = echo.wait(bad, timeout=30)
    assert failed["status"] == "failed", failed
    assert failed["error"] == "echo failed: \\ud800", failed  # the lone surrogate, escaped
    for path in (f"/jobs/{bad}/logs", "/jobs"):  # its record reads back whole
        assert echo.get(path).status_code == 200, path
    for job_id in [slow, *good]:
        done = echo.wait(job_id, timeout=30)
        assert done["status"] == "completed", done


def test_cancelling_a_job_the_child_has_not_started_spares_the_one_it_runs(
    idle: System,
) -> None:
    echo = idle
    slow = _infer(echo, "sleep:6")
    queued = [_infer(echo, f"queued {i}") for i in range(3)]
    working(echo)
    echo.wait(slow, {"running"}, timeout=30)  # the others queued behind it in its child
    for job_id in queued[:2]:
        assert echo.delete(f"/jobs/{job_id}").status_code == 200
    done = echo.wait(slow, timeout=60)
    assert done["status"] == "completed", done
    assert done["attempt"] == 1, done  # the child running it was not killed
    for job_id in queued[:2]:
        assert echo.status(job_id)["status"] == "cancelled"
    after = echo.wait(queued[2], timeout=60)
    assert after["status"] == "completed", after
    assert after["attempt"] == 1, after
    assert after["result"]["pid"] == done["result"]["pid"]  # the same child answered both


def test_a_job_queued_behind_a_running_one_shows_pending_until_it_starts(idle: System) -> None:
    echo = idle
    slow = _infer(echo, "sleep:6")
    queued = _infer(echo, "queued")
    working(echo)
    echo.wait(slow, {"running"}, timeout=30)
    # claimed by the worker (its attempt is taken), and queued in its child behind the slow one
    wait_until(lambda: echo.status(queued)["attempt"] == 1, 10, "the worker to claim it")
    time.sleep(1)  # a renewal or two later: still not started, so still pending
    shown = echo.status(queued)
    assert (shown["status"], shown["started_at"]) == ("pending", None), shown
    assert echo.status(slow)["status"] == "running"

    def listed(state: str) -> list[str]:
        return [j["job_id"] for j in echo.get("/jobs", params={"status": state}).json()["jobs"]]

    assert (listed("pending"), listed("running")) == ([queued], [slow])
    done = echo.wait(queued, timeout=60)
    assert done["status"] == "completed", done
    assert done["attempt"] == 1, done
    assert done["started_at"] is not None
    assert echo.status(slow)["status"] == "completed"


def test_jobs_handed_back_at_shutdown_spend_no_attempt(system: System) -> None:
    system.env_overrides["AIJOBS_SHUTDOWN_GRACE_SECONDS"] = "1"
    system.start_api()
    _with_store(system, "model")
    payload = {"model_type": "echo", "data_path": "slow.csv", "hyperparameters": {"sleep": 60}}
    training = _with_store(
        system,
        "submit",
        NewJob(
            job_type=JobType.TRAINING,
            queue="sklearn",
            payload=payload,
            model_type="echo",
            max_attempts=1,
        ),
    )
    for _ in range(2):  # a worker restarted twice: the job's one attempt is still there
        worker = system.start_worker("sklearn", runtime=RUNTIME)
        system.wait(training, {"running"}, timeout=30)
        system.stop(worker)
        back = system.status(training)
        assert back["status"] == "pending", back
        assert back["attempt"] == 0, back
