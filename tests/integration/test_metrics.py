"""GET /metrics from real `aijobs serve` processes: two API processes on one store answer the
same figures after a known sequence of jobs, on both stores; a pending job's status says why it
waits; with auth on, /metrics needs an admin or the metrics token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from aijobs.cli import app
from tests.integration.harness import QUICK, SLOW, System, wait_until

pytestmark = pytest.mark.stores("sqlite", "redis")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(system: System, **headers: str) -> Samples:
    r = system.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


@contextmanager
def second_api(system: System) -> Iterator[System]:
    """Another `aijobs serve` on the same store, started beside the first."""
    other = System(home=system.home, data=system.data, env_overrides=system.env_overrides)
    system.start_api()
    other.start_api()  # one after the other: two starting at once on a busy host may be slow
    try:
        yield other
    finally:
        other.stop_all()


def test_two_api_processes_answer_the_same_figures(system: System) -> None:
    with second_api(system) as other:
        # Before any worker: two jobs wait, and say why.
        first = system.submit("/jobs/training", QUICK)
        second = system.submit("/jobs/training", QUICK)
        waiting: dict[str, Any] = other.status(second)["waiting"]
        assert waiting["jobs_ahead"] == 1
        assert waiting["workers"] == 0
        assert "1 job ahead" in waiting["reason"]
        assert "no worker serves sklearn" in waiting["reason"]
        for job in (first, second):
            assert system.delete(f"/jobs/{job}").json()["waiting"] is None
        system.start_worker("sklearn")
        done = system.submit("/jobs/training", QUICK)
        assert system.wait(done)["status"] == "completed"
        assert system.status(done)["waiting"] is None
        slow = system.submit("/jobs/training", {**SLOW, "timeout_seconds": 1})
        timed_out = system.wait(slow)
        assert timed_out["status"] == "failed", timed_out

        def idle() -> bool:  # the worker's heartbeat says it runs nothing now
            return value(scrape(system), "aijobs_worker_slots", queue="sklearn", state="idle") == 1

        wait_until(idle, 30, "the worker's slot idle")
        here, there = scrape(system), scrape(other)
    assert here == there
    sklearn = {"job_type": "training", "queue": "sklearn"}
    assert value(here, "aijobs_jobs_submitted_total", **sklearn) == 4
    for status, n in (("completed", 1), ("failed", 1), ("cancelled", 2)):
        assert value(here, "aijobs_jobs_finished_total", status=status, **sklearn) == n
    # Cancelled while pending: no attempt, no failure. (A lease lost on a busy host counts as
    # `lost`: not asserted.)
    for reason in ("timeout", "crashed", "error", "cancelled"):
        expected = 1 if reason == "timeout" else 0
        assert value(here, "aijobs_job_failures_total", queue="sklearn", reason=reason) == expected
    assert value(here, "aijobs_job_wait_seconds_count", queue="sklearn") == 2
    assert value(here, "aijobs_job_wait_seconds_bucket", queue="sklearn", le="+Inf") == 2
    assert value(here, "aijobs_job_run_seconds_count", **sklearn) == 2
    assert value(here, "aijobs_job_run_seconds_sum", **sklearn) >= 1  # the timeout's run
    assert value(here, "aijobs_queue_jobs", queue="sklearn", state="pending") == 0
    assert value(here, "aijobs_queue_jobs", queue="sklearn", state="running") == 0
    assert value(here, "aijobs_workers", queue="sklearn") == 1
    assert value(here, "aijobs_worker_slots", queue="sklearn", state="busy") == 0


def aijobs(system: System, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=system.env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout.strip()


@pytest.mark.stores("sqlite")
def test_metrics_need_an_admin_or_the_metrics_token(system: System) -> None:
    system.env_overrides["AIJOBS_AUTH"] = "required"
    system.env_overrides["AIJOBS_METRICS_TOKEN"] = "scrape-me-0123456789"
    user = aijobs(system, "keys", "create", "alice")
    admin = aijobs(system, "keys", "create", "ops", "--admin")
    system.start_api()
    assert system.get("/metrics").status_code == 401
    assert system.get("/metrics", headers={"X-API-Key": "nope"}).status_code == 401
    wrong = {"Authorization": "Bearer scrape-me-wrong"}
    assert system.get("/metrics", headers=wrong).status_code == 401
    refused = system.get("/metrics", headers={"Authorization": f"Bearer {user}"})
    assert refused.status_code == 403
    assert refused.json()["status_code"] == 403
    token = scrape(system, Authorization="Bearer scrape-me-0123456789")
    assert token == scrape(system, Authorization=f"Bearer {admin}")
    assert ("aijobs_workers", (("queue", "sklearn"),)) in token
    # The token opens /metrics only.
    assert (
        system.get("/jobs", headers={"Authorization": "Bearer scrape-me-0123456789"}).status_code
        == 401
    )
