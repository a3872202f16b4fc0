"""Credentials across processes: two real API processes on one store, keys made and revoked by
`aijobs keys`, used by the SDK and the CLI. A revoke holds at once on every API process."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from typer.testing import CliRunner

from aijobs.cli import app
from aijobs.client import APIError, Client
from tests.integration.harness import QUICK, System


def aijobs(system: System, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, list(args), env=system.env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_a_revoke_holds_at_once_on_every_api_process(system: System) -> None:
    system.env_overrides["AIJOBS_AUTH"] = "required"
    alice = aijobs(system, "keys", "create", "alice").stdout.strip()
    aijobs(system, "keys", "create", "ops", "--admin")
    other = System(home=system.home, data=system.data, env_overrides=system.env_overrides)
    starting = threading.Thread(target=other.start_api)  # a second API, on the same store
    starting.start()
    system.start_api()
    starting.join()
    try:
        with Client(system.url, api_key=alice) as first, Client(other.url, api_key=alice) as second:
            job = first.submit_training(QUICK["model_type"], QUICK["data_path"]).job_id
            assert second.status(job).job_id == job  # the other process knows the key too
            listed = aijobs(system, "--url", other.url, "--api-key", alice, "--json", "list")
            assert job in listed.stdout
            aijobs(system, "--url", other.url, "list", code=2)  # no credentials: 401

            aijobs(system, "keys", "revoke", "alice")
            for client in (first, second):
                with pytest.raises(APIError) as refused:
                    client.status(job)
                assert refused.value.status_code == 401
        assert "alice" not in aijobs(system, "keys", "list").stdout
    finally:
        other.stop_all()
