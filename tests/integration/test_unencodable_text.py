"""Text that cannot be encoded as UTF-8 (a lone surrogate, sent as a JSON escape) in a job's
input fails that job with an error that names it, through the real API, worker and runtimes."""

from __future__ import annotations

from tests.integration.harness import QUICK, System

LONE_SURROGATE = "\\ud800"  # as written in a JSON body


def _post_raw(system: System, path: str, body: str) -> str:
    r = system.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def test_a_hyperparameter_that_cannot_be_encoded_is_named_in_the_error(running: System) -> None:
    body = (
        f'{{"model_type": "{QUICK["model_type"]}", "data_path": "{QUICK["data_path"]}",'
        f' "hyperparameters": {{"{LONE_SURROGATE}": 1}}}}'
    )
    # Refused at submission, in the envelope, naming the key (never a 500).
    r = running.post("/jobs/training", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    refused = r.json()
    assert refused["status_code"] == 422
    assert f"unknown hyperparameter: {LONE_SURROGATE}" in refused["detail"], refused


def test_a_json_row_that_cannot_be_encoded_fails_only_its_job(running: System) -> None:
    trained = running.wait(running.submit("/jobs/training", QUICK), timeout=120)
    assert trained["status"] == "completed", trained
    model_id = trained["result"]["model_id"]
    row = '"{\\"\\\\ud800\\": 1}"'  # a JSON row as a string; its key, escaped, is one
    bad = _post_raw(
        running, "/jobs/inference", f'{{"model_id": "{model_id}", "input_data": {row}}}'
    )
    failed = running.wait(bad, timeout=60)
    assert failed["status"] == "failed", failed
    assert "UnicodeEncodeError" not in failed["error"], failed
    assert failed["attempt"] == 1, failed  # failed on its own, not rescued as "worker lost"
