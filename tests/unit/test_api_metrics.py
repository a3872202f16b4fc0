"""GET /metrics and a pending job's `waiting`, in process on a real SQLite store (the same from
several processes is tests/integration/test_metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aijobs.api.app import create_app
from aijobs.api.schemas import Waiting
from aijobs.api.waiting import reason
from aijobs.jobs import WorkerInfo, now
from aijobs.settings import Settings
from tests.auth_support import LOCAL

TRAIN = {"model_type": "random_forest", "data_path": "tabular_data.csv"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tabular_data.csv").write_text("a,b,label\n1,2,x\n")
    settings = Settings(home=tmp_path / "var", data_roots=str(data))
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_count_submissions_and_show_every_queue(client: TestClient) -> None:
    before = samples(client)
    assert before["aijobs_queue_jobs", (("queue", "sklearn"), ("state", "pending"))] == 0
    assert before["aijobs_workers", (("queue", "pytorch-2.1-gpu"),)] == 0
    for _ in range(2):
        assert client.post("/jobs/training", json=TRAIN).status_code == 200
    after = samples(client)
    labels = (("job_type", "training"), ("queue", "sklearn"))
    assert after["aijobs_jobs_submitted_total", labels] == 2
    assert after["aijobs_queue_jobs", (("queue", "sklearn"), ("state", "pending"))] == 2
    failures = (("queue", "sklearn"), ("reason", "timeout"))
    assert after["aijobs_job_failures_total", failures] == 0


def test_the_oldest_waiting_job_of_each_queue(client: TestClient) -> None:
    oldest = "aijobs_queue_oldest_waiting_seconds"
    assert samples(client)[oldest, (("queue", "sklearn"),)] == 0
    first = client.post("/jobs/training", json=TRAIN).json()["job_id"]
    time.sleep(1.0)
    client.post("/jobs/training", json={**TRAIN, "priority": 5})
    waited = samples(client)[oldest, (("queue", "sklearn"),)]
    assert 1.0 <= waited < 60
    assert samples(client)[oldest, (("queue", "tensorflow"),)] == 0
    queues = {q["queue"]: q for q in client.get("/queues").json()["queues"]}
    assert 1.0 <= queues["sklearn"]["oldest_wait_seconds"] < 60
    assert queues["tensorflow"]["oldest_wait_seconds"] is None
    client.delete(f"/jobs/{first}")  # the newer one, at a higher priority, waits less
    queues = {q["queue"]: q for q in client.get("/queues").json()["queues"]}
    assert queues["sklearn"]["oldest_wait_seconds"] < 1.0


def test_a_pending_job_says_why_it_waits(client: TestClient) -> None:
    first = client.post("/jobs/training", json={**TRAIN, "priority": 1}).json()["job_id"]
    second = client.post("/jobs/training", json=TRAIN).json()["job_id"]
    waiting = client.get(f"/jobs/{second}/status").json()["waiting"]
    assert waiting == {
        "jobs_ahead": 1,
        "retried_jobs_ahead": 0,
        "retry_in_seconds": None,
        "claimed": False,
        "workers": 0,
        "idle_slots": 0,
        "busy_with": [],
        "reason": "1 job ahead; no worker serves sklearn",
    }
    store = client.app.state.store  # type: ignore[attr-defined]
    info = WorkerInfo(
        worker_id="w1",
        host="h",
        pid=1,
        queues=["sklearn"],
        concurrency=2,
        running=1,
        started_at=now(),
        last_seen=now(),
    )
    client.portal.call(store.register_worker, info)  # type: ignore[union-attr]
    waiting = client.get(f"/jobs/{first}/status").json()["waiting"]
    assert (waiting["jobs_ahead"], waiting["workers"], waiting["idle_slots"]) == (0, 1, 1)
    assert waiting["reason"] == "next in line; 1 worker, 1 idle slot"
    busy = info.model_copy(update={"running": 2, "running_jobs": ["job_a", "job_b"]})
    client.portal.call(store.register_worker, busy)  # type: ignore[union-attr]
    waiting = client.get(f"/jobs/{second}/status").json()["waiting"]
    assert waiting["busy_with"] == ["job_a", "job_b"]
    assert waiting["reason"] == "1 job ahead; 1 worker, busy with job_a, job_b"
    worker = client.get("/workers").json()["workers"][0]
    assert worker["running_jobs"] == ["job_a", "job_b"]
    assert client.delete(f"/jobs/{first}").json()["waiting"] is None


@pytest.mark.parametrize(
    ("waiting", "text"),
    [
        (
            Waiting(jobs_ahead=3, retried_jobs_ahead=0, workers=1, idle_slots=0, reason=""),
            "3 jobs ahead; 1 worker, all busy",
        ),
        (
            Waiting(
                jobs_ahead=3,
                retried_jobs_ahead=0,
                workers=2,
                idle_slots=0,
                busy_with=["job_a", "job_b", "job_c", "job_d", "job_e"],
                reason="",
            ),
            "3 jobs ahead; 2 workers, busy with job_a, job_b, job_c and 2 more",
        ),
        (
            Waiting(jobs_ahead=0, retried_jobs_ahead=2, workers=2, idle_slots=3, reason=""),
            "next in line (and 2 retried, waiting out their back-off); 2 workers, 3 idle slots",
        ),
        (
            Waiting(
                jobs_ahead=0,
                retried_jobs_ahead=0,
                retry_in_seconds=12.4,
                workers=1,
                idle_slots=1,
                reason="",
            ),
            "retried after a failed attempt: it waits out its back-off, 12s more; next in line; "
            "1 worker, 1 idle slot",
        ),
        (
            Waiting(
                jobs_ahead=0, retried_jobs_ahead=0, claimed=True, workers=1, idle_slots=0, reason=""
            ),
            "a worker took it: it starts when the jobs that worker took before it are done",
        ),
    ],
)
def test_the_reason_in_words(waiting: Waiting, text: str) -> None:
    assert reason("sklearn", waiting) == text
