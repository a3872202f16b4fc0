"""The API in-process, on a real SQLite store: the contract's shapes and every bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aijobs.api.app import create_app
from aijobs.jobs import WorkerInfo, now
from aijobs.settings import Settings
from tests.auth_support import LOCAL


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "data"
    (data / "images" / "a").mkdir(parents=True)
    (data / "tabular_data.csv").write_text("a,b,label\n1,2,x\n")
    (tmp_path / "secret.csv").write_text("x\n")
    (data / "escape.csv").symlink_to(tmp_path / "secret.csv")
    settings = Settings(home=tmp_path / "var", data_roots=str(data), max_body_bytes=10_000)
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        yield c


def train(**overrides: object) -> dict[str, object]:
    return {"model_type": "random_forest", "data_path": "/data/tabular_data.csv", **overrides}


def assert_envelope(r: object, code: int, *words: str) -> None:
    body = r.json()  # type: ignore[attr-defined]
    assert r.status_code == code, body  # type: ignore[attr-defined]
    assert set(body) == {"error", "detail", "status_code"}
    assert body["status_code"] == code
    for word in words:
        assert word in body["detail"], body


def test_submit_and_status_shapes(client: TestClient) -> None:
    r = client.post("/jobs/training", json=train())
    assert r.status_code == 200
    job = r.json()
    assert job["status"] == "queued"
    assert job["estimated_duration"] == "00:00:30"
    st = client.get(f"/jobs/{job['job_id']}/status").json()
    assert st["status"] == "pending"
    assert st["progress"] == 0.0
    assert st["queue"] == "sklearn"
    assert st["result"] is None
    assert st["error"] is None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"data_path": "x.csv"}, "model_type is required"),
        ({"model_type": "svm"}, "data_path is required"),
        (train(model_type=5), "model_type"),
        (train(requires_gpu="yes"), "requires_gpu"),
        (train(hyperparameters=[1, 2]), "hyperparameters"),
        (train(priority="high"), "priority"),
        (train(timeout_seconds=-1), "timeout_seconds"),
        (train(model_type=""), "model_type"),
        (train(hyperparams={}), "hyperparams is not a known field"),
    ],
)
def test_validation_errors_are_422_envelopes(
    client: TestClient, body: dict[str, object], detail: str
) -> None:
    assert_envelope(client.post("/jobs/training", json=body), 422, detail)


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/jobs/training", content=b'{"model_type": ', headers={"content-type": "application/json"}
    )
    assert_envelope(r, 400, "not valid JSON")


def test_body_over_limit_is_413(client: TestClient) -> None:
    r = client.post("/jobs/training", json=train(description="x" * 20_000))
    assert_envelope(r, 413, "exceeds")


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        (train(framework_override="jax"), 400, "valid: "),
        (train(model_type="bert", framework_override="sklearn"), 400, "cannot train"),
        (train(data_path="/etc/passwd"), 400, "outside the data roots"),
        (train(data_path="../../etc/passwd"), 400, "outside the data roots"),
        (train(data_path="escape.csv"), 400, "outside the data roots"),
        (train(data_path="missing.csv"), 400, "does not exist"),
    ],
)
def test_bad_training_requests(
    client: TestClient, body: dict[str, object], code: int, detail: str
) -> None:
    assert_envelope(client.post("/jobs/training", json=body), code, detail)


def test_unknown_model_and_job_are_404(client: TestClient) -> None:
    r = client.post("/jobs/inference", json={"model_id": "nope", "input_data": "1,2"})
    assert_envelope(r, 404, "nope")
    assert_envelope(client.get("/jobs/job_missing/status"), 404, "job_missing")
    assert_envelope(client.delete("/jobs/job_missing"), 404)
    assert_envelope(client.get("/no/such/route"), 404)


@pytest.mark.parametrize(
    "query",
    [{"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "ten"}, {"status": "done"}],
)
def test_list_parameters_out_of_range(client: TestClient, query: dict[str, str | int]) -> None:
    assert_envelope(client.get("/jobs", params=query), 422)


def test_list_filter_and_pagination(client: TestClient) -> None:
    ids = [client.post("/jobs/training", json=train()).json()["job_id"] for _ in range(5)]
    client.delete(f"/jobs/{ids[0]}")
    page = client.get("/jobs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][1:3]
    cancelled = client.get("/jobs", params={"status": "cancelled"}).json()
    assert cancelled["total"] == 1
    assert cancelled["jobs"][0]["job_id"] == ids[0]
    assert cancelled["jobs"][0]["model_type"] == "random_forest"


def test_routing_decision_is_reported(client: TestClient) -> None:
    cases = {
        ("bert", False, None): "pytorch-2.1-cpu",
        ("resnet", True, "pytorch-2.0"): "pytorch-2.0-gpu",
        ("transformer", True, "pytorch-2.1-gpu"): "pytorch-2.1-gpu",
        ("svm", True, None): "sklearn",
    }
    for (model, gpu, override), queue in cases.items():
        body = train(model_type=model, requires_gpu=gpu, framework_override=override)
        r = client.post("/jobs/training", json=body)
        assert r.json()["queue"] == queue, (model, r.json())
        assert r.json()["queue_has_worker"] is False


@pytest.mark.parametrize("override", [None, ""])
def test_an_unknown_model_type_goes_to_the_default_queue(
    client: TestClient, override: str | None
) -> None:
    body = train(model_type="quantum_forest", framework_override=override)
    r = client.post("/jobs/training", json=body)
    assert r.status_code == 200, r.json()
    assert r.json()["queue"] == "pytorch-2.1-cpu"


def _live_worker(client: TestClient, model_types: list[str] | None) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    info = WorkerInfo(
        worker_id="w1",
        host="h",
        pid=1,
        queues=["pytorch-2.1-cpu"],
        model_types=model_types,
        started_at=now(),
        last_seen=now(),
    )
    client.portal.call(store.register_worker, info)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("declared", "warned"),
    [(["bert", "gpt"], True), (["bert", "quantum_forest"], False), (None, False)],
)
def test_the_answer_says_when_no_live_worker_declares_the_model_type(
    client: TestClient, declared: list[str] | None, warned: bool
) -> None:
    _live_worker(client, declared)  # None: a worker that does not say what it trains
    answer = client.post("/jobs/training", json=train(model_type="quantum_forest")).json()
    assert answer["queue_has_worker"] is True
    if warned:
        assert "declares model_type 'quantum_forest'" in answer["message"]
    else:
        assert answer["message"] is None
    bert = client.post("/jobs/training", json=train(model_type="bert")).json()
    assert bert["message"] is None


def test_a_completed_training_job_carries_its_model_id(client: TestClient) -> None:
    job_id = client.post("/jobs/training", json=train()).json()["job_id"]
    assert client.get(f"/jobs/{job_id}/status").json()["model_id"] is None
    store = client.app.state.store  # type: ignore[attr-defined]
    (claim,) = client.portal.call(store.claim, ["sklearn"], "w1", 60)  # type: ignore[union-attr]
    result = {"model_id": "random_forest_model_1", "metrics": {"accuracy": 1.0}}
    client.portal.call(store.finish, job_id, claim.token, result)  # type: ignore[union-attr]
    status = client.get(f"/jobs/{job_id}/status").json()
    assert status["model_id"] == "random_forest_model_1"
    assert status["result"]["model_id"] == "random_forest_model_1"


def test_idempotency_key_returns_first_job(client: TestClient) -> None:
    h = {"Idempotency-Key": "abc-123"}
    first = client.post("/jobs/training", json=train(), headers=h).json()
    second = client.post("/jobs/training", json=train(), headers=h).json()
    assert first["job_id"] == second["job_id"]
    assert client.get("/jobs").json()["total"] == 1


def test_health_redis_tells_the_truth(client: TestClient) -> None:
    body = client.get("/health/redis").json()
    assert body["store"] == "sqlite"
    assert body["status"] == "healthy"
    assert "no Redis is configured" in body["detail"]


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/health/redis", "/jobs/training", "/jobs/inference", "/jobs"} <= set(paths)


def test_list_rows_leave_out_what_does_not_apply(client: TestClient) -> None:
    training = client.post("/jobs/training", json=train()).json()["job_id"]
    client.delete(f"/jobs/{training}")
    rows = {row["job_id"]: row for row in client.get("/jobs").json()["jobs"]}
    common = ["job_id", "job_type", "status", "created_at", "updated_at", "queue", "progress"]
    assert list(rows[training]) == [*common, "model_type", "error"]
    assert rows[training]["error"] == "Job cancelled by user"
    pending = client.post("/jobs/training", json=train()).json()["job_id"]
    newest = client.get("/jobs", params={"limit": 1}).json()["jobs"][0]
    assert newest["job_id"] == pending
    assert list(newest) == [*common, "model_type"]


def test_catalogue_answers_are_described_by_the_schema(client: TestClient) -> None:
    queues = client.get("/queues").json()["queues"]
    assert queues[-1]["queue"] == "sklearn"
    assert queues[-1]["workers"] == []
    assert list(queues[-1]) == [
        "queue",
        "label",
        "gpu",
        "pending",
        "running",
        "oldest_wait_seconds",
        "workers",
        "has_worker",
    ]
    assert client.get("/workers").json() == {"workers": []}
    assert client.get("/models").json() == {"models": [], "total": 0, "limit": 100, "offset": 0}
    assert list(client.get("/health").json()) == ["status", "timestamp", "version", "store"]
    spec = client.get("/openapi.json").json()
    answers = {"/queues": "QueueList", "/workers": "WorkerList", "/models": "ModelList"}
    answers |= {"/jobs": "JobList", "/health": "Health"}
    for path, name in answers.items():
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{name}"}, path
    rows = spec["components"]["schemas"]["JobList"]["properties"]["jobs"]["items"]
    assert rows == {"$ref": "#/components/schemas/JobSummary"}


def test_method_not_allowed_keeps_its_allow_header(client: TestClient) -> None:
    r = client.put("/jobs/training", json=train())
    assert_envelope(r, 405)
    assert r.headers["allow"] == "POST"


def test_chunked_body_over_limit_is_413(client: TestClient) -> None:
    big = json.dumps(train(description="x" * 2_000_000)).encode()
    chunks = (big[i : i + 65_536] for i in range(0, len(big), 65_536))
    r = client.post("/jobs/training", content=chunks, headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_envelope(r, 413, "exceeds 10000 bytes")


@pytest.mark.parametrize("timeout", [1e-9, 0.5, 0])
def test_timeout_below_one_second_is_422(client: TestClient, timeout: float) -> None:
    r = client.post("/jobs/training", json=train(timeout_seconds=timeout))
    assert_envelope(r, 422, "timeout_seconds")


def test_timeout_of_one_second_is_accepted(client: TestClient) -> None:
    job = client.post("/jobs/training", json=train(timeout_seconds=1)).json()["job_id"]
    assert client.get("/jobs", params={"limit": 1}).json()["jobs"][0]["job_id"] == job


def test_integral_float_priority_is_an_integer(client: TestClient) -> None:
    assert client.post("/jobs/training", json=train(priority=7.0)).status_code == 200
    for bad in (1.5, "1", True, 1e300):
        assert_envelope(client.post("/jobs/training", json=train(priority=bad)), 422, "priority")


def test_idempotency_key_reused_with_another_body_is_422(client: TestClient) -> None:
    h = {"Idempotency-Key": "reused"}
    first = client.post("/jobs/training", json=train(), headers=h).json()
    r = client.post("/jobs/training", json=train(priority=5), headers=h)
    assert_envelope(r, 422, "Idempotency-Key")
    r = client.post("/jobs/inference", json={"model_id": "m", "input_data": "1"}, headers=h)
    assert r.status_code in (404, 422)  # the model is looked up first
    again = client.post("/jobs/training", json=train(), headers=h).json()
    assert again["job_id"] == first["job_id"]
    assert client.get("/jobs").json()["total"] == 1
