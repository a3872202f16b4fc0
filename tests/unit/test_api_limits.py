"""The API's limits in-process, on a real SQLite store: rate limits, queue limits, bounded input,
bounded reads, model deletion, and log lines nobody can forge."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from aijobs import logsafe
from aijobs.api.app import create_app
from aijobs.api.auth import ANONYMOUS, Caller
from aijobs.api.ratelimit import client_address, counted_as
from aijobs.jobs import ModelRecord
from aijobs.settings import Settings, parse_networks, parse_rate
from aijobs.store import JobStore
from tests.auth_support import LOCAL
from tests.unit.test_api import assert_envelope, train

Client = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Client]:
    """A client of an app with the given settings; closed after the test."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "tabular_data.csv").write_text("a,b,label\n1,2,x\n")
    opened: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        app = create_app(Settings(home=tmp_path / "var", data_roots=str(data), **settings))
        client = TestClient(app, base_url=LOCAL).__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def run(client: TestClient, call: Callable[[JobStore], Any]) -> Any:
    """Run a store call on the app's own store, in the app's event loop."""
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]

    async def go() -> Any:
        return await call(store)

    assert client.portal is not None
    return client.portal.call(go)


# -- rate limits ---------------------------------------------------------------------------------
def test_submit_rate_limit_answers_429_with_the_headers(make_client: Client) -> None:
    client = make_client(rate_limit_submit="2/hour")
    first = client.post("/jobs/training", json=train())
    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert client.post("/jobs/training", json=train()).headers["RateLimit-Remaining"] == "0"
    refused = client.post("/jobs/training", json=train())
    assert_envelope(refused, 429, "rate limit of 2 submit requests", "AIJOBS_RATE_LIMIT_SUBMIT")
    assert refused.json()["error"] == "Too many requests"
    reset = int(refused.headers["RateLimit-Reset"])
    assert 0 < reset <= 3600
    assert refused.headers["Retry-After"] == str(reset)
    assert refused.headers["RateLimit-Remaining"] == "0"
    # Reads have their own limit (none here), and /health is never limited.
    assert client.get("/jobs").status_code == 200
    assert "RateLimit-Limit" not in client.get("/jobs").headers
    assert client.get("/health").status_code == 200


def test_read_rate_limit_covers_every_read_but_health(make_client: Client) -> None:
    client = make_client(rate_limit_read="3/minute")
    for path in ("/jobs", "/queues", "/models"):
        assert client.get(path).status_code == 200
    assert_envelope(client.get("/workers"), 429, "AIJOBS_RATE_LIMIT_READ")
    assert_envelope(client.get("/jobs/job_x/status"), 429)
    assert client.get("/health").status_code == 200
    assert client.post("/jobs/training", json=train()).status_code == 200


def test_a_bad_rate_setting_is_refused() -> None:
    for bad in ("100", "ten/minute", "0/minute", "5/fortnight"):
        with pytest.raises(ValueError, match="is not a rate"):
            parse_rate(bad)
    assert parse_rate("20/10seconds") == (20, 10.0)
    assert parse_rate(" 100 / minute ") == (100, 60.0)
    assert parse_rate("") is None


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


def test_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    proxies = parse_networks("10.0.0.0/8, ::1")
    # A client that is not a proxy cannot choose the address it is counted as.
    assert client_address(_request("203.0.113.9", "1.2.3.4"), proxies) == "203.0.113.9"
    assert client_address(_request("203.0.113.9", "1.2.3.4"), []) == "203.0.113.9"
    # Behind proxies: the nearest address that is not a proxy; what the client wrote to the
    # left of it does not count.
    spoofed = _request("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.3")
    assert client_address(spoofed, proxies) == "198.51.100.7"
    assert client_address(_request("::1", "2001:db8::5"), proxies) == "2001:db8::5"
    assert client_address(_request("10.0.0.2"), proxies) == "10.0.0.2"
    settings = Settings(trusted_proxies="10.0.0.0/8")
    assert counted_as(_request("10.0.0.2", "1.2.3.4"), settings, ANONYMOUS) == "address:1.2.3.4"
    alice = Caller(principal="key:alice", admin=False)
    assert counted_as(_request("10.0.0.2"), settings, alice) == "principal:key:alice"


def test_a_bad_trusted_proxy_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local")


# -- queue limits --------------------------------------------------------------------------------
def test_pending_limit_per_queue_answers_429_naming_it(make_client: Client) -> None:
    client = make_client(max_pending_per_queue=2)
    for _ in range(2):
        assert client.post("/jobs/training", json=train()).status_code == 200
    refused = client.post("/jobs/training", json=train())
    assert_envelope(refused, 429, "'sklearn'", "AIJOBS_MAX_PENDING_PER_QUEUE=2")
    other_queue = train(model_type="bert", data_path="/data/tabular_data.csv")
    assert client.post("/jobs/training", json=other_queue).status_code == 200


# -- bounded input -------------------------------------------------------------------------------
def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


DEEP = _nested(40)
HOSTILE: list[tuple[dict[str, Any], str]] = [
    (train(hyperparameters={"n_estimators": 10**400}), "an integer of 401 digits"),
    (train(hyperparameters={"n_estimators": 100_000_000, "n_jobs": -1}), "n_jobs"),
    (train(hyperparameters={"verbose": 3}), "verbose"),
    (train(hyperparameters={"n_estimators": 5000}), "at most 2000 on this server"),
    (train(model_type="svm", hyperparameters={"kernel": "precomputed"}), "'kernel'"),
    (train(model_type="bert", hyperparameters={"epochs": 10_000}), "at most 1000"),
    (train(model_type="gpt", hyperparameters={"hidden_size": 8192}), "'hidden_size'"),
    (train(model_type="resnet", hyperparameters={"image_size": 1024}), "'image_size'"),
    (train(model_type="inception", hyperparameters={"batch_size": "64"}), "'batch_size'"),
    (train(timeout_seconds=90_000), "AIJOBS_MAX_JOB_TIMEOUT_SECONDS"),
    (train(hyperparameters={"target_column": "x" * 70_000}), "AIJOBS_MAX_PARAMETERS_BYTES"),
    (
        train(model_type="mine", framework_override="sklearn", hyperparameters={"n": -(10**30)}),
        "hyperparameters.n is an integer of 31 digits",
    ),
    (
        train(model_type="mine", framework_override="sklearn", hyperparameters={"a": DEEP}),
        "nested more than 32 levels",
    ),
]


@pytest.mark.parametrize(("body", "detail"), HOSTILE)
def test_hostile_training_requests_are_refused(
    make_client: Client, body: dict[str, Any], detail: str
) -> None:
    client = make_client(max_body_bytes=200_000)
    assert_envelope(client.post("/jobs/training", json=body), 422, detail)
    assert client.get("/jobs").json()["total"] == 0  # nothing was stored


def test_a_custom_model_types_hyperparameters_take_any_shape_within_bounds(
    make_client: Client,
) -> None:
    client = make_client()
    body = train(model_type="mine", framework_override="sklearn")
    body["hyperparameters"] = {"a": _nested(30), "b": {"c": 2**63 - 1}, "d": "text"}
    assert client.post("/jobs/training", json=body).status_code == 200


def test_operator_ceilings_and_caps_apply(make_client: Client) -> None:
    client = make_client(
        hyperparameter_ceilings="epochs=3", max_description_chars=10, max_input_data_chars=5
    )
    bert = train(model_type="bert", hyperparameters={"epochs": 4})
    assert_envelope(client.post("/jobs/training", json=bert), 422, "'epochs' must be at most 3")
    long = train(description="x" * 11)
    assert_envelope(client.post("/jobs/training", json=long), 422, "AIJOBS_MAX_DESCRIPTION_CHARS")
    infer = {"model_id": "m", "input_data": "1,2,3,4,5,6"}
    assert_envelope(client.post("/jobs/inference", json=infer), 422, "AIJOBS_MAX_INPUT_DATA_CHARS")
    sized = {"model_id": "m", "input_data": "1", "parameters": {"k": "x" * 70_000}}
    client = make_client(max_body_bytes=200_000)
    assert_envelope(client.post("/jobs/inference", json=sized), 422, "parameters take")
    # Within every bound: accepted (the API reference's example values).
    ok = train(hyperparameters={"n_estimators": 100, "max_depth": 10, "min_samples_split": 5})
    assert client.post("/jobs/training", json=ok).status_code == 200


# -- bounded reads, models -----------------------------------------------------------------------
def test_log_is_served_in_pages(make_client: Client) -> None:
    client = make_client()
    job_id = client.post("/jobs/training", json=train()).json()["job_id"]

    async def finish(store: JobStore) -> None:
        (claim,) = await store.claim(["sklearn"], "w1", 60)
        await store.finish(job_id, claim.token, {}, log="0123456789")

    run(client, finish)
    whole = client.get(f"/jobs/{job_id}/logs")
    assert (whole.text, whole.headers["X-Log-Length"], whole.headers["X-Log-Offset"]) == (
        "0123456789",
        "10",
        "0",
    )
    page = client.get(f"/jobs/{job_id}/logs", params={"offset": 3, "limit": 4})
    assert (page.text, page.headers["X-Log-Offset"]) == ("3456", "3")
    tail = client.get(f"/jobs/{job_id}/logs", params={"tail": 3})
    assert (tail.text, tail.headers["X-Log-Offset"]) == ("789", "7")
    assert client.get(f"/jobs/{job_id}/logs", params={"offset": 50}).text == ""
    assert_envelope(client.get(f"/jobs/{job_id}/logs", params={"limit": 0}), 422, "limit")
    assert_envelope(client.get(f"/jobs/{job_id}/logs", params={"tail": 10**7}), 422, "tail")


def test_models_are_paged_and_can_be_deleted(make_client: Client, tmp_path: Path) -> None:
    client = make_client()
    now = time.time()

    async def add_models(store: JobStore) -> None:
        for i in range(3):
            record = ModelRecord(
                model_id=f"m{i}",
                framework="sklearn",
                queue="sklearn",
                model_type="random_forest",
                path=f"/models/m{i}",
                job_id=f"job_{i}",
                created_at=now + i,
            )
            await store.add_model(record)

    run(client, add_models)
    files = tmp_path / "var" / "models" / "m1" / "attempt-1"
    files.mkdir(parents=True)
    (files / "model.bin").write_bytes(b"x")
    page = client.get("/models", params={"limit": 2, "offset": 1}).json()
    assert [m["model_id"] for m in page["models"]] == ["m1", "m0"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert_envelope(client.get("/models", params={"limit": 5000}), 422, "limit")
    deleted = client.delete("/models/m1")
    assert deleted.status_code == 200
    assert deleted.json()["model_id"] == "m1"
    assert not (tmp_path / "var" / "models" / "m1").exists()
    assert_envelope(client.get("/models/m1"), 404, "model m1 not found")
    assert_envelope(client.delete("/models/m1"), 404, "model m1 not found")
    assert_envelope(client.post("/jobs/inference", json={"model_id": "m1", "input_data": "1"}), 404)
    assert client.get("/models").json()["total"] == 2


def test_a_model_deleted_elsewhere_takes_no_inference_job(make_client: Client) -> None:
    """An API process keeps the model records it read (they never change); a model deleted by
    another process is still refused at the next inference POST, by the submit's own check."""
    client = make_client()
    record = ModelRecord(
        model_id="m",
        framework="sklearn",
        queue="sklearn",
        model_type="random_forest",
        path="/models/m",
        job_id="job_m",
        created_at=time.time(),
    )
    run(client, lambda store: store.add_model(record))
    body = {"model_id": "m", "input_data": "1"}
    accepted = client.post("/jobs/inference", json=body)
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["queue"] == "sklearn"
    run(client, lambda store: store.delete_model("m"))  # as another API process would
    assert_envelope(client.post("/jobs/inference", json=body), 404, "model m not found")
    assert client.get("/jobs").json()["total"] == 1


# -- log lines -----------------------------------------------------------------------------------
def test_control_characters_in_logged_values_are_escaped(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("aijobs.test_forgery")
    caplog.handler.addFilter(logsafe.EscapeControlCharacters())
    with caplog.at_level(logging.INFO):
        logger.info("job=%s", "x\n2026-01-01 ERROR forged\x1b[2J\u2028")
        logger.info("%(path)s", {"path": "/jobs/\r\nfake"})
        # uvicorn's access log reads its arguments as a tuple: they stay one, escaped.
        logging.getLogger("aijobs.test_forgery").info(
            '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/a\nb", "1.1", 404
        )
    lines = caplog.text.splitlines()
    assert len(lines) == 3, lines
    assert "x\\x0a2026-01-01 ERROR forged\\x1b[2J\\u2028" in lines[0]
    assert "/jobs/\\x0d\\x0afake" in lines[1]
    assert '"GET /a\\x0ab HTTP/1.1" 404' in lines[2]
