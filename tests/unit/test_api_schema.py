"""The API meets its own OpenAPI document.

Schemathesis generates requests for every operation, valid and invalid ones, and checks each
answer against the document (no 5xx; the status code, content type, headers and body are the
documented ones; invalid requests are refused), in process on a real SQLite store, with auth
off (the default on loopback) and on. The run is bounded and deterministic: a fixed number of
examples per operation, derandomized.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aijobs.api.app import create_app
from aijobs.settings import Settings
from tests.auth_support import LOCAL, add_key

EXAMPLES_PER_OPERATION = 40
AUTH_EXAMPLES_PER_OPERATION = 10  # with auth on: the same routes, answered as documented too

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("schema")
    data = home / "data"
    data.mkdir()
    (data / "tabular_data.csv").write_text("a,b,label\n1,2,x\n")
    config = Settings(home=home / "var", data_roots=str(data), max_body_bytes=100_000)
    with TestClient(create_app(config), base_url=LOCAL, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def spec(api: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = api.get("/openapi.json").json()
    return document


def test_error_answers_are_declared_as_the_envelope(spec: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    declared = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = {c: r for c, r in operation["responses"].items() if not c.startswith("2")}
            for code, answer in errors.items():
                if path != "/health/redis":
                    assert answer["content"]["application/json"]["schema"] == envelope, code
            declared[f"{method.upper()} {path}"] = sorted(errors)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert declared == {
        "GET /health": [],
        "GET /health/redis": ["503"],
        "GET /metrics": ["401", "403", "503"],
        "POST /jobs/training": ["400", "401", "413", "422", "429", "503"],
        "POST /jobs/inference": ["400", "401", "403", "404", "413", "422", "429", "503"],
        "GET /jobs/{job_id}/status": ["401", "403", "404", "422", "429", "503"],
        "GET /jobs/{job_id}/logs": ["401", "403", "404", "422", "429", "503"],
        "GET /jobs/{job_id}/events": ["400", "401", "403", "404", "422", "429", "503"],
        "DELETE /jobs/{job_id}": ["400", "401", "403", "404", "422", "429", "503"],
        "GET /jobs": ["401", "422", "429", "503"],
        "GET /queues": ["401", "429", "503"],
        "GET /routing": ["400", "401", "422", "429", "503"],
        "GET /workers": ["401", "429", "503"],
        "GET /models": ["401", "422", "429", "503"],
        "GET /models/{model_id}": ["401", "403", "404", "422", "429", "503"],
        "DELETE /models/{model_id}": ["401", "403", "404", "422", "429", "503"],
    }
    challenge = spec["paths"]["/jobs"]["get"]["responses"]["401"]
    assert "WWW-Authenticate" in challenge["headers"]
    unavailable = spec["paths"]["/jobs"]["get"]["responses"]["503"]
    assert "Retry-After" in unavailable["headers"]
    limited = spec["paths"]["/jobs/training"]["post"]["responses"]["429"]["headers"]
    assert set(limited) == {
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    }


@pytest.mark.parametrize(
    ("model_type", "override"),
    [
        ("random_forest", None),
        ("random_forest", ""),
        ("0", None),
        ("0", ""),
        ("0", "sklearn"),
        ("0", " PyTorch-2.0 "),
        ("bert", "sklearn"),
        ("bert", "PYTORCH-2.1-gpu"),
        ("svm", "Scikit-Learn"),
        ("svm", "jax"),
        ("inception", "tensorflow"),
        ("inception", " "),
    ],
)
def test_the_schema_accepts_the_training_requests_the_api_accepts(
    api: TestClient, spec: dict[str, Any], model_type: str, override: str | None
) -> None:
    body: dict[str, Any] = {"model_type": model_type, "data_path": "tabular_data.csv"}
    if override is not None:
        body["framework_override"] = override
    declared = jsonschema_rs.Draft202012Validator(spec["components"]["schemas"]["TrainingRequest"])
    answer = api.post("/jobs/training", json=body)
    assert answer.status_code in (200, 400), answer.json()
    assert declared.is_valid(body) == (answer.status_code == 200), answer.json()


def as_httpx(
    case: schemathesis.Case[Any], api: TestClient, credentials: dict[str, str]
) -> dict[str, Any]:
    """Schemathesis's request (in the requests library's words) for the httpx test client."""
    request: dict[str, Any] = case.as_transport_kwargs(base_url=str(api.base_url))
    if not request.get("cookies"):  # the API reads no cookies; httpx warns on an empty jar
        request.pop("cookies", None)
    if isinstance(request.get("data"), str | bytes):  # a raw body
        request["content"] = request.pop("data")
    request["headers"] = {**(request.get("headers") or {}), **credentials}
    return request


def conformance_failures(
    api: TestClient,
    spec: dict[str, Any],
    mode: GenerationMode,
    examples: int,
    credentials: dict[str, str] | None = None,
) -> list[str]:
    failures = []
    for result in schemathesis.openapi.from_dict(spec).get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            request = as_httpx(case, api, credentials or {})
            case.validate_response(api.request(**request), checks=CHECKS)

        try:
            answers_as_documented()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without parameters
        except FailureGroup as found:  # every operation runs; all that fail are reported
            failures.append(f"{operation.label}: {found}")
    return failures


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_every_answer_is_the_documented_one(
    api: TestClient, spec: dict[str, Any], mode: GenerationMode
) -> None:
    failures = conformance_failures(api, spec, mode, EXAMPLES_PER_OPERATION)
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="module")
def api_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """The API with auth required, and a (non-admin) key of its store."""
    home = tmp_path_factory.mktemp("schema-auth")
    config = Settings(home=home / "var", data_roots=str(home), auth="required")
    key = add_key(config, "schemathesis")
    with TestClient(create_app(config), base_url=LOCAL, raise_server_exceptions=False) as client:
        yield client, key


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-credentials"])
def test_every_answer_with_auth_is_the_documented_one(
    api_with_auth: tuple[TestClient, str], spec: dict[str, Any], with_key: bool
) -> None:
    client, key = api_with_auth
    credentials = {"X-API-Key": key} if with_key else {}
    failures = conformance_failures(
        client, spec, GenerationMode.POSITIVE, AUTH_EXAMPLES_PER_OPERATION, credentials
    )
    assert not failures, "\n\n".join(failures)
