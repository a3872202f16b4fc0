"""A body over the size limit, sent whole by an ordinary client to the real server: the client
reads the 413 envelope, instead of a reset connection."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import httpx
import pytest

from tests.integration.harness import System

BODY = b'{"model_type": "' + b"x" * (20 * 2**20) + b'", "data_path": "d.csv"}'  # 20 MiB


def test_every_client_reads_the_413_of_a_body_too_large(system: System) -> None:
    system.start_api()
    url = f"{system.url}/jobs/training"
    request = urllib.request.Request(
        url, data=BODY, headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=120)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["status_code"] == 413

    answer = httpx.post(
        url, content=BODY, headers={"Content-Type": "application/json"}, timeout=120
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "Payload too large"
    assert system.get("/health").status_code == 200  # the server is none the worse
