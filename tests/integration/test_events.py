"""GET /jobs/{id}/events and live logs with the real API and worker processes: a real training
job followed to its end, a dropped stream resumed with Last-Event-ID (no loss, no repeat), a
cancelled job's stream, and `aijobs logs -f`. Jobs that print and report epochs run on
tests/echo_runtime.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from aijobs.client import AsyncClient, Client, JobEvent
from aijobs.jobs import JobType, NewJob
from aijobs.settings import Settings
from aijobs.store import open_store
from tests.integration.harness import SLOW, System

RUNTIME = "tests.echo_runtime:EchoRuntime"
EPOCHS = {"epochs": 4, "epoch_seconds": 0.8, "lines_per_epoch": 3}


@pytest.fixture
def echo(system: System) -> System:
    system.start_api()
    system.start_worker("sklearn", runtime=RUNTIME)
    return system


def submit_echo(system: System, **hyperparameters: Any) -> str:
    """An echo training job, submitted straight into the store (the API knows no echo type)."""

    async def main() -> str:
        settings = Settings(
            home=system.home,
            store_url=system.env.get("AIJOBS_STORE_URL", ""),
            redis_prefix=system.env.get("AIJOBS_REDIS_PREFIX", "aijobs"),
        )
        store = open_store(settings.resolved_store_url, settings=settings)
        await store.open()
        try:
            payload = {"model_type": "echo", "data_path": "slow.csv"}
            payload["hyperparameters"] = hyperparameters  # type: ignore[assignment]
            job = NewJob(
                job_type=JobType.TRAINING, queue="sklearn", payload=payload, model_type="echo"
            )
            return (await store.submit(job)).id
        finally:
            await store.close()

    return asyncio.run(main())


def log_text(events: list[JobEvent]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "log")


def epochs_of(events: list[JobEvent]) -> list[int]:
    return [h["epoch"] for e in events if e.event == "progress" for h in e.data["history"]]


def states_of(events: list[JobEvent]) -> list[str]:
    return [e.data["status"] for e in events if e.event == "state"]


def test_follow_a_real_training_job_to_its_end(running: System) -> None:
    job_id = running.submit("/jobs/training", SLOW)
    events: list[JobEvent] = []
    live_log = None
    with Client(running.url) as client:
        for event in client.events(job_id, timeout=120):
            events.append(event)
            if event.event == "log" and live_log is None:
                live_log = running.status(job_id)["status"]
    assert live_log == "running"  # its output was readable while it ran
    assert states_of(events)[0] in {"pending", "running"}
    assert states_of(events)[-1] == "completed"
    assert events[-1].final
    assert events[-1].data["result"]["model_id"]
    assert epochs_of(events) == [1]  # scikit-learn reports its one epoch
    text = log_text(events)
    assert "training random_forest on" in text
    assert "done in" in text
    assert text == running.get(f"/jobs/{job_id}/logs").text
    assert len({e.id for e in events}) == len(events)


def read_events(response: httpx.Response, until: int | None = None) -> list[JobEvent]:
    out: list[JobEvent] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            continue
        if "data" in fields:
            out.append(JobEvent(fields["id"], fields["event"], json.loads(fields["data"])))
            if until is not None and len(out) >= until:
                break  # drop the connection mid-stream
        fields = {}
    return out


@pytest.mark.stores
def test_a_dropped_stream_resumes_without_loss_or_repeat(echo: System) -> None:
    job_id = submit_echo(echo, **EPOCHS)
    url = f"{echo.url}/jobs/{job_id}/events"
    with Client(echo.url) as client:
        uninterrupted = list(client.events(job_id, timeout=120))
    # Followed again from the start, dropped after three events, resumed from the third.
    job_id = submit_echo(echo, **EPOCHS)
    url = f"{echo.url}/jobs/{job_id}/events"
    with httpx.stream("GET", url, timeout=30) as response:
        first = read_events(response, until=3)
    time.sleep(1.5)  # the job goes on meanwhile
    with httpx.stream("GET", url, headers={"Last-Event-ID": first[-1].id}, timeout=60) as again:
        rest = read_events(again)
    union = first + rest
    assert len({e.id for e in union}) == len(union)  # no repeat
    assert log_text(union) == echo.get(f"/jobs/{job_id}/logs").text
    # the same output as the uninterrupted stream's job (but for the time it took)
    assert log_text(union).splitlines()[:-1] == log_text(uninterrupted).splitlines()[:-1]
    assert log_text(union).count("✓") == 12
    assert epochs_of(union) == epochs_of(uninterrupted) == [1, 2, 3, 4]
    assert states_of(union)[-1] == states_of(uninterrupted)[-1] == "completed"
    assert states_of(union).count("running") == 1

    async def follow_async() -> list[JobEvent]:
        async with AsyncClient(echo.url) as client:
            return [event async for event in client.events(job_id)]

    with Client(echo.url) as client:  # the job has ended: both clients read the same events
        assert asyncio.run(follow_async()) == list(client.events(job_id)) != []


def test_the_sdk_resumes_across_an_api_restart(echo: System) -> None:
    """The API stops mid-stream (its streams end, without a final state); the SDK reconnects
    with Last-Event-ID to the restarted API and misses nothing."""
    job_id = submit_echo(echo, epochs=5, epoch_seconds=1.0, lines_per_epoch=2)
    events: list[JobEvent] = []
    with Client(echo.url, retries=30, backoff=0.5) as client:
        for event in client.events(job_id, timeout=120):
            events.append(event)
            if len(events) == 2:
                echo.stop(echo.api)
                echo.start_api()
    assert states_of(events)[-1] == "completed"
    assert len({e.id for e in events}) == len(events)
    assert epochs_of(events) == [1, 2, 3, 4, 5]
    assert log_text(events) == echo.get(f"/jobs/{job_id}/logs").text
    assert log_text(events).count("✓") == 10


def test_the_stream_of_a_cancelled_job_ends(echo: System) -> None:
    job_id = submit_echo(echo, sleep=60)
    seen: list[JobEvent] = []
    with Client(echo.url) as client:
        for event in client.events(job_id, timeout=60):
            seen.append(event)
            if event.event == "state" and event.data["status"] == "running":
                assert echo.delete(f"/jobs/{job_id}").status_code == 200
    assert states_of(seen)[-1] == "cancelled"
    assert seen[-1].final


def test_logs_follow_prints_lines_while_the_job_runs_and_exits_at_its_end(echo: System) -> None:
    job_id = submit_echo(echo, epochs=5, epoch_seconds=1.0, lines_per_epoch=2)
    command = [sys.executable, "-m", "aijobs", "logs", "-f", job_id, "--url", echo.url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=echo.env) as follow:
        assert follow.stdout is not None
        first = follow.stdout.readline().decode()
        assert first.startswith("training echo on ")
        assert echo.status(job_id)["status"] == "running"  # printed before the job ended
        rest = follow.stdout.read().decode()
        assert follow.wait(timeout=60) == 0  # completed
    assert echo.status(job_id)["status"] == "completed"
    assert first + rest == echo.get(f"/jobs/{job_id}/logs").text
    assert (first + rest).count("✓") == 10
