"""Authentication and ownership: the real app on a real store (SQLite and Redis), keys made as
`aijobs keys create` makes them, and JWTs from a secret and from a real local OIDC provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aijobs.api.app import create_app
from aijobs.jobs import ModelRecord
from aijobs.settings import Settings
from aijobs.store import open_store
from tests.auth_support import (
    AUDIENCE,
    LOCAL,
    SECRET,
    Provider,
    add_key,
    claims,
    ec_key,
    oidc_provider,
    revoke_key,
    rsa_key,
    unsigned,
)
from tests.redis_server import prefix_for, shared_server

TRAIN = {"model_type": "random_forest", "data_path": "tabular_data.csv"}


@dataclass
class Api:
    client: TestClient
    settings: Settings
    provider: Provider
    keys: dict[str, str]  # name -> key

    def as_(self, name: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[name]}

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def submit(self, name: str) -> str:
        answer = self.client.post("/jobs/training", json=TRAIN, headers=self.as_(name))
        assert answer.status_code == 200, answer.json()
        job_id: str = answer.json()["job_id"]
        return job_id

    def run_in_store(self, action: Any) -> Any:
        async def run() -> Any:
            store = open_store(self.settings.resolved_store_url, settings=self.settings)
            await store.open()
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(run())


def store_settings(backend: str, tmp_path: Path) -> dict[str, Any]:
    if backend == "redis":
        return {"store_url": shared_server().url, "redis_prefix": prefix_for(tmp_path)}
    return {"store_url": f"sqlite:///{tmp_path / 'aijobs.db'}"}


@pytest.fixture(params=["sqlite", "redis"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tabular_data.csv").write_text("a,b,label\n1,2,x\n")
    with oidc_provider(rsa_key("k1"), ec_key("e1")) as provider:
        settings = Settings(
            home=tmp_path / "var",
            data_roots=str(data),
            auth="required",
            jwt_secret=SECRET,
            oidc_issuer=provider.issuer,
            jwt_audience=AUDIENCE,
            jwt_jwks_refresh_seconds=0,
            **store_settings(str(request.param), tmp_path),
        )
        keys = {
            "alice": add_key(settings, "alice"),
            "bob": add_key(settings, "bob"),
            "root": add_key(settings, "root", admin=True),
        }
        with TestClient(create_app(settings), base_url=LOCAL) as client:
            yield Api(client, settings, provider, keys)


def assert_refused(answer: Any, code: int, *words: str) -> None:
    body = answer.json()
    assert answer.status_code == code, body
    assert set(body) == {"error", "detail", "status_code"}
    assert body["status_code"] == code
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    if code == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


# -- who you are -------------------------------------------------------------------------------
def test_health_is_open_and_everything_else_needs_credentials(api: Api) -> None:
    assert api.client.get("/health").status_code == 200
    for method, path in [
        ("GET", "/jobs"),
        ("POST", "/jobs/training"),
        ("GET", "/jobs/job_x/status"),
        ("DELETE", "/jobs/job_x"),
        ("GET", "/queues"),
        ("GET", "/workers"),
        ("GET", "/models"),
    ]:
        assert_refused(api.client.request(method, path, json=TRAIN), 401, "API key")


def test_a_wrong_credential_is_401(api: Api) -> None:
    for wrong in [
        {"X-API-Key": "aij_not-a-key-anyone-has"},
        {"Authorization": "Bearer aij_not-a-key-anyone-has"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    ]:
        assert_refused(api.client.get("/jobs", headers=wrong), 401)


def test_a_key_works_in_either_header_until_revoked(api: Api) -> None:
    key = api.keys["alice"]
    assert api.client.get("/jobs", headers={"X-API-Key": key}).status_code == 200
    assert api.client.get("/jobs", headers=api.bearer(key)).status_code == 200
    revoke_key(api.settings, "alice")  # by another client of the store, like `aijobs keys revoke`
    assert_refused(api.client.get("/jobs", headers={"X-API-Key": key}), 401, "invalid API key")
    assert api.client.get("/jobs", headers=api.as_("bob")).status_code == 200


def test_tokens_signed_with_the_secret(api: Api) -> None:
    issuer = api.provider.issuer

    def hs256(**overrides: Any) -> dict[str, str]:
        return api.bearer(jwt_encode(claims(issuer, **overrides)))

    assert api.client.get("/jobs", headers=hs256()).status_code == 200
    now = int(time.time())
    assert_refused(api.client.get("/jobs", headers=hs256(exp=now - 60)), 401, "expired")
    assert_refused(api.client.get("/jobs", headers=hs256(nbf=now + 600)), 401, "not yet valid")
    assert_refused(api.client.get("/jobs", headers=hs256(aud="another-api")), 401, "audience")
    assert_refused(
        api.client.get("/jobs", headers=hs256(iss="https://evil.example")), 401, "issuer"
    )
    no_expiry = claims(issuer)
    del no_expiry["exp"]
    assert_refused(api.client.get("/jobs", headers=api.bearer(jwt_encode(no_expiry))), 401, "exp")
    forged = jwt_encode(claims(issuer), secret="another-secret-of-at-least-32-bytes")
    assert_refused(api.client.get("/jobs", headers=api.bearer(forged)), 401, "Signature")
    assert_refused(api.client.get("/jobs", headers=api.bearer(unsigned(claims(issuer)))), 401)


def jwt_encode(payload: dict[str, Any], secret: str = SECRET) -> str:
    import jwt

    return jwt.encode(payload, secret, algorithm="HS256")


def test_tokens_signed_by_the_providers_keys_and_a_key_rotation(api: Api) -> None:
    rsa, ec = api.provider.keys
    issuer = api.provider.issuer
    assert api.client.get("/jobs", headers=api.bearer(rsa.sign(claims(issuer)))).status_code == 200
    assert api.client.get("/jobs", headers=api.bearer(ec.sign(claims(issuer)))).status_code == 200
    fetched = api.provider.fetches
    api.client.get("/jobs", headers=api.bearer(rsa.sign(claims(issuer))))
    assert api.provider.fetches == fetched  # the key set is cached

    rotated = rsa_key("k2", slot=1)
    api.provider.keys = [rotated]  # the provider rotates: k1 and e1 retired, k2 new
    token = rotated.sign(claims(issuer, sub="carol"))
    assert api.client.get("/jobs", headers=api.bearer(token)).status_code == 200
    assert api.provider.fetches == fetched + 1  # the unknown kid made it fetch the set again
    retired = api.client.get("/jobs", headers=api.bearer(rsa.sign(claims(issuer))))
    assert_refused(retired, 401, "k1")

    stranger = rsa_key("k2", slot=2)  # a key of the same kid that the provider never published
    assert_refused(
        api.client.get("/jobs", headers=api.bearer(stranger.sign(claims(issuer)))),
        401,
        "Signature",
    )


def test_a_token_cannot_pass_a_public_key_off_as_an_hmac_secret(api: Api) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    public = (
        api.provider.keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # PyJWT itself refuses to HMAC with a PEM key, so the confused token is signed by hand.
    import base64
    import hashlib
    import hmac
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    signing_input = f"{part(head)}.{part(claims(api.provider.issuer))}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert_refused(api.client.get("/jobs", headers=api.bearer(token)), 401, "Signature")


# -- what you may see ----------------------------------------------------------------------------
def test_a_principal_sees_lists_and_cancels_only_its_own_jobs(api: Api) -> None:
    mine = api.submit("alice")
    theirs = api.submit("bob")
    for method, path in [
        ("GET", f"/jobs/{theirs}/status"),
        ("GET", f"/jobs/{theirs}/logs"),
        ("GET", f"/jobs/{theirs}/events"),
        ("DELETE", f"/jobs/{theirs}"),
    ]:
        answer = api.client.request(method, path, headers=api.as_("alice"))
        assert_refused(answer, 403, theirs, "someone else")
    assert api.client.get(f"/jobs/{mine}/status", headers=api.as_("alice")).status_code == 200
    listed = api.client.get("/jobs", headers=api.as_("alice")).json()
    assert ([j["job_id"] for j in listed["jobs"]], listed["total"]) == ([mine], 1)
    pending = api.client.get("/jobs?status=pending", headers=api.as_("bob")).json()
    assert [j["job_id"] for j in pending["jobs"]] == [theirs]
    cancelled = api.client.delete(f"/jobs/{mine}", headers=api.as_("alice"))
    assert cancelled.json()["status"] == "cancelled"

    everything = api.client.get("/jobs", headers=api.as_("root")).json()
    assert {j["job_id"] for j in everything["jobs"]} == {mine, theirs}
    assert api.client.get(f"/jobs/{theirs}/status", headers=api.as_("root")).status_code == 200
    assert api.client.delete(f"/jobs/{theirs}", headers=api.as_("root")).status_code == 200


def test_a_tokens_subject_owns_its_jobs_and_the_admin_claim_sees_all(api: Api) -> None:
    issuer = api.provider.issuer
    carol = api.bearer(jwt_encode(claims(issuer, sub="carol")))
    admin = api.bearer(jwt_encode(claims(issuer, sub="ops", scope="read aijobs:admin")))
    job = api.client.post("/jobs/training", json=TRAIN, headers=carol).json()["job_id"]
    theirs = api.submit("alice")
    assert api.client.get(f"/jobs/{job}/status", headers=carol).status_code == 200
    assert_refused(api.client.get(f"/jobs/{theirs}/status", headers=carol), 403)
    # a key named like a token's subject is another principal
    assert_refused(api.client.get(f"/jobs/{theirs}/status", headers=api.as_("bob")), 403)
    listed = api.client.get("/jobs", headers=admin).json()
    assert {j["job_id"] for j in listed["jobs"]} == {job, theirs}


def test_idempotency_keys_are_per_principal(api: Api) -> None:
    key = {"Idempotency-Key": "same-key"}
    first = api.client.post("/jobs/training", json=TRAIN, headers=api.as_("alice") | key)
    again = api.client.post("/jobs/training", json=TRAIN, headers=api.as_("alice") | key)
    other = api.client.post("/jobs/training", json=TRAIN, headers=api.as_("bob") | key)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert other.status_code == 200
    assert other.json()["job_id"] != first.json()["job_id"]


def test_errors_and_logs_name_no_host_paths_but_to_an_admin(api: Api) -> None:
    root = str(api.settings.roots[0])
    outside = {**TRAIN, "data_path": "/etc/passwd"}
    refused = api.client.post("/jobs/training", json=outside, headers=api.as_("alice"))
    assert_refused(refused, 400, "outside the data roots", "<data root 1>")
    assert root not in refused.json()["detail"]
    as_admin = api.client.post("/jobs/training", json=outside, headers=api.as_("root"))
    assert_refused(as_admin, 400, root)

    job_id = api.submit("alice")
    error = f"FileNotFoundError: {root}/tabular_data.csv vanished"

    async def fail_it(store: Any) -> None:
        (claim,) = await store.claim(["sklearn"], "w1", 60.0)
        assert await store.fail(claim.job.id, claim.token, error, log=f"reading {root}/x\n")

    api.run_in_store(fail_it)
    seen = api.client.get(f"/jobs/{job_id}/status", headers=api.as_("alice")).json()
    assert seen["error"] == "FileNotFoundError: <data root 1>/tabular_data.csv vanished"
    log = api.client.get(f"/jobs/{job_id}/logs", headers=api.as_("alice")).text
    assert log == "reading <data root 1>/x\n"
    events = api.client.get(f"/jobs/{job_id}/events", headers=api.as_("alice")).text
    assert "reading <data root 1>/x" in events
    assert root not in events
    assert root in api.client.get(f"/jobs/{job_id}/events", headers=api.as_("root")).text
    admin = api.client.get(f"/jobs/{job_id}/status", headers=api.as_("root")).json()
    assert admin["error"] == error


def test_models_and_results_are_their_owners_without_host_paths(api: Api) -> None:
    job_id = api.submit("alice")

    async def train_it(store: Any) -> None:
        (claim,) = await store.claim(["sklearn"], "w1", 60.0)
        record = ModelRecord(
            model_id="model_alice",
            framework="sklearn",
            queue="sklearn",
            model_type="random_forest",
            path="/srv/aijobs/models/model_alice",
            job_id=job_id,
            created_at=time.time(),
            principal="key:alice",
        )
        result = {"model_id": "model_alice", "model_path": record.path, "metrics": {}}
        assert await store.finish(claim.job.id, claim.token, result, model=record)

    api.run_in_store(train_it)
    status = api.client.get(f"/jobs/{job_id}/status", headers=api.as_("alice")).json()
    assert status["result"] == {"model_id": "model_alice", "metrics": {}}
    admin_view = api.client.get(f"/jobs/{job_id}/status", headers=api.as_("root")).json()
    assert admin_view["result"]["model_path"] == "/srv/aijobs/models/model_alice"

    mine = api.client.get("/models/model_alice", headers=api.as_("alice")).json()
    assert (mine["model_id"], mine["path"]) == ("model_alice", None)
    listed = api.client.get("/models", headers=api.as_("alice")).json()["models"]
    assert [(m["model_id"], m["path"]) for m in listed] == [("model_alice", None)]
    assert api.client.get("/models", headers=api.as_("bob")).json()["models"] == []
    assert_refused(api.client.get("/models/model_alice", headers=api.as_("bob")), 403)
    infer = {"model_id": "model_alice", "input_data": "1,2"}
    answer = api.client.post("/jobs/inference", json=infer, headers=api.as_("bob"))
    assert_refused(answer, 403, "model_alice")
    assert (
        api.client.post("/jobs/inference", json=infer, headers=api.as_("alice")).status_code == 200
    )
    admin_model = api.client.get("/models/model_alice", headers=api.as_("root")).json()
    assert admin_model["path"] == "/srv/aijobs/models/model_alice"
    # Only its owner (or an admin) may delete it.
    assert_refused(api.client.delete("/models/model_alice", headers=api.as_("bob")), 403)
    gone = api.client.delete("/models/model_alice", headers=api.as_("alice"))
    assert (gone.status_code, gone.json()["path"]) == (200, None)
    assert_refused(api.client.get("/models/model_alice", headers=api.as_("root")), 404)


# -- when auth applies -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "auth", "required", "hosts"),
    [
        ("127.0.0.1", "", False, ["localhost", "127.0.0.1", "::1"]),
        ("::1", "", False, ["localhost", "127.0.0.1", "::1"]),
        ("localhost", "required", True, ["localhost", "127.0.0.1", "::1"]),
        ("0.0.0.0", "", True, None),
        ("10.1.2.3", "off", False, None),
    ],
)
def test_auth_and_hosts_follow_the_listening_address(
    host: str, auth: str, required: bool, hosts: list[str] | None
) -> None:
    settings = Settings(host=host, auth=auth)
    assert (settings.auth_required, settings.host_names) == (required, hosts)
    assert Settings(host=host, allowed_hosts="api.example, *").host_names is None
    assert Settings(host=host, allowed_hosts="API.example").host_names == ["api.example"]


def test_a_page_rebinding_its_name_to_loopback_is_refused(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path / "var"))  # auth off: loopback
    with TestClient(app, base_url="http://attacker.example:8000") as client:
        answer = client.get("/jobs")
        assert answer.status_code == 400
        assert "attacker.example" in answer.json()["detail"]
        for local in ("http://localhost:8000", "http://127.0.0.1", "http://[::1]:8000"):
            assert client.get("/jobs", headers={"Host": local.split("//")[1]}).status_code == 200


def test_serve_refuses_to_expose_an_api_nobody_could_use(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aijobs.cli import app

    env = {"AIJOBS_HOME": str(tmp_path / "var"), "AIJOBS_HOST": "127.0.0.1"}
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "aijobs keys create" in result.output
    assert "AIJOBS_AUTH=off" in result.output


async def test_a_key_or_an_issuer_is_a_way_in(tmp_path: Path) -> None:
    from aijobs.api.auth import startup_problem

    exposed = Settings(home=tmp_path / "var", host="0.0.0.0")
    store = open_store(exposed.resolved_store_url, settings=exposed)
    await store.open()
    try:
        assert await startup_problem(exposed, store)
        assert await startup_problem(Settings(host="0.0.0.0", auth="off"), store) is None
        assert await startup_problem(Settings(host="0.0.0.0", jwt_secret=SECRET), store) is None
        await asyncio.to_thread(add_key, exposed, "ops", True)
        assert await startup_problem(exposed, store) is None
    finally:
        await store.close()
