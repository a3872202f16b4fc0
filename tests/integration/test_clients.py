"""The Python clients against the real API and a real scikit-learn worker: the SDK (sync and
async) and the spec's own example client pasted unchanged. One running system serves the whole
module (`live`); the command line's tests are in test_cli.py."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from aijobs.client import (
    AIJobClient,
    APIConnectionError,
    APIError,
    AsyncClient,
    Client,
    JobStatus,
    NotFoundError,
    State,
    SubmitResponse,
    WaitTimeout,
)
from aijobs.settings import Settings
from aijobs.store import open_store
from tests.integration.harness import System, free_port

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "docs" / "api-reference.md"
IRIS = "/data/tabular_data.csv"
FOREST = {"n_estimators": 20, "max_depth": 5, "random_state": 42}

# The API reference's "Python SDK Example", verbatim (the test below checks it against
# docs/api-reference.md).
SPEC_PYTHON_EXAMPLE = """\
import requests
import time

class AIJobClient:
    def __init__(self, base_url="http://localhost:8000"):
        self.base_url = base_url
    
    def submit_training_job(self, model_type, data_path, **kwargs):
        payload = {
            "model_type": model_type,
            "data_path": data_path,
            **kwargs
        }
        response = requests.post(f"{self.base_url}/jobs/training", json=payload)
        return response.json()
    
    def submit_inference_job(self, model_id, input_data, **kwargs):
        payload = {
            "model_id": model_id,
            "input_data": input_data,
            **kwargs
        }
        response = requests.post(f"{self.base_url}/jobs/inference", json=payload)
        return response.json()
    
    def get_job_status(self, job_id):
        response = requests.get(f"{self.base_url}/jobs/{job_id}/status")
        return response.json()
    
    def wait_for_completion(self, job_id, timeout=3600):
        start_time = time.time()
        while time.time() - start_time < timeout:
            status = self.get_job_status(job_id)
            if status["status"] in ["completed", "failed"]:
                return status
            time.sleep(5)
        raise TimeoutError(f"Job {job_id} did not complete within {timeout} seconds")

# Usage
client = AIJobClient()

# Submit training job
job = client.submit_training_job(
    model_type="bert",
    data_path="/data/training.csv",
    hyperparameters={"epochs": 5, "batch_size": 16},
    description="BERT training"
)

# Wait for completion
result = client.wait_for_completion(job["job_id"])
print(f"Training completed: {result}")
"""  # noqa: W293 - the spec's blank lines with spaces, kept


@pytest.fixture
def client(live: System) -> Iterator[Client]:
    with Client(live.url) as c:
        yield c


@pytest.fixture(scope="module")
def trained(live: System) -> JobStatus:
    """A random forest trained on iris through the SDK (shared: training costs seconds here)."""
    with Client(live.url) as c:
        accepted = c.submit_training(
            "random_forest", IRIS, FOREST, description="sdk", framework_override="sklearn"
        )
        assert isinstance(accepted, SubmitResponse)
        assert accepted.status == "queued"
        assert accepted.queue == "sklearn"
        assert accepted.queue_has_worker
        return c.wait(accepted.job_id, timeout=120)


@pytest.fixture(scope="module")
def model_id(trained: JobStatus) -> str:
    assert trained.result is not None, trained
    model: str = trained.result["model_id"]
    return model


def parked(c: Client) -> str:
    """A job on a queue no worker serves here: it stays pending until cancelled."""
    accepted = c.submit_training("inception", "/data/cifar10", framework_override="tensorflow")
    assert accepted.queue == "tensorflow"
    assert not accepted.queue_has_worker
    return accepted.job_id


class Relay(httpx.BaseTransport):
    """Delivers requests for real, through a transport of its own that it closes with itself."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def close(self) -> None:
        self.inner.close()


class Lossy(Relay):
    """Delivers requests for real; loses the answer of the first one whose method matches."""

    def __init__(self, method: str = "*", lose: int = 1) -> None:
        super().__init__()
        self.method = method
        self.lose = lose
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        if self.lose and self.method in ("*", request.method):
            self.lose -= 1
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by peer")
        return response


class Counting(Relay):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return self.inner.handle_request(request)


# -- Python SDK --------------------------------------------------------------------------------
def test_submit_wait_typed_results(client: Client, trained: JobStatus) -> None:
    assert isinstance(trained, JobStatus)
    assert trained.status is State.COMPLETED
    assert trained.progress == 1.0
    assert trained.description == "sdk"
    assert trained.job_type.value == "training"
    assert trained.result is not None
    assert trained.result["metrics"]["accuracy"] > 0.8
    assert client.status(trained.job_id) == trained
    assert client.logs(trained.job_id)
    assert trained.result["model_id"] in {m["model_id"] for m in client.models()}


def test_wait_sees_a_quick_inference_at_once(client: Client, model_id: str) -> None:
    first = client.wait(client.submit_inference(model_id, "5.1,3.5,1.4,0.2").job_id, timeout=60)
    assert first.status is State.COMPLETED
    assert first.result is not None
    assert first.result["predictions"] == ["setosa"]
    started = time.monotonic()
    job = client.submit_inference(model_id, "6.7,3.0,5.2,2.3", {"probability": True})
    done = client.wait(job.job_id, timeout=60)
    took = time.monotonic() - started
    assert done.status is State.COMPLETED
    assert done.result is not None
    assert done.result["predictions"] == ["virginica"]
    assert took < 1.5, f"a warm inference was seen after {took:.2f}s"  # a 5 s sleep-poll: >= 5 s


def test_long_poll_holds_then_answers_pending(client: Client) -> None:
    job = parked(client)
    started = time.monotonic()
    status = client.status(job, wait=1)
    took = time.monotonic() - started
    assert status.status is State.PENDING
    assert 0.9 <= took < 3, took
    with pytest.raises(WaitTimeout) as timed_out:
        client.wait(job, timeout=0.3)
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.last.status is State.PENDING
    client.cancel(job)


def test_cancelled_is_terminal_and_ends_a_wait_at_once(client: Client, live: System) -> None:
    job = parked(client)
    result: dict[str, Any] = {}

    def waiter() -> None:
        with Client(live.url) as other:
            result["status"] = other.wait(job, timeout=30)
            result["ended"] = time.monotonic()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    cancelled_at = time.monotonic()
    assert client.cancel(job).status is State.CANCELLED
    thread.join(10)
    assert result["status"].status is State.CANCELLED  # the spec's loop would wait out 3600 s
    assert result["ended"] - cancelled_at < 1.0
    with pytest.raises(APIError) as again:
        client.cancel(job)
    assert again.value.status_code == 400
    assert again.value.error == "Job cannot be cancelled"


def test_errors_carry_the_envelope(client: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.status("job_00000000-0000-4000-8000-000000000000")
    assert missing.value.status_code == 404
    assert missing.value.error == "Job not found"
    assert "not found" in missing.value.detail
    with pytest.raises(NotFoundError):
        client.submit_inference("no_such_model", "1,2,3,4")
    with pytest.raises(APIError) as invalid:
        client.submit_training("random_forest", IRIS, priority=5000)
    assert invalid.value.status_code == 422
    assert invalid.value.error == "Validation error"
    assert "priority" in invalid.value.detail
    with pytest.raises(APIError) as bad:
        client.submit_training("random_forest", IRIS, framework_override="cobol")
    assert bad.value.status_code == 400
    assert "framework_override" in bad.value.detail


@pytest.mark.parametrize(
    ("wait", "words"),
    [("61", "less than or equal to 60"), ("-1", "greater than or equal to 0"), ("abc", "number")],
)
def test_long_poll_rejects_bad_waits(live: System, wait: str, words: str) -> None:
    with Client(live.url) as c:
        job = parked(c)
        r = live.get(f"/jobs/{job}/status", params={"wait": wait})
        c.cancel(job)
    assert r.status_code == 422
    assert r.json() == {
        "error": "Validation error",
        "detail": r.json()["detail"],
        "status_code": 422,
    }
    assert "wait" in r.json()["detail"]
    assert words in r.json()["detail"]


def test_a_held_long_poll_does_not_hold_up_a_shutdown(system: System) -> None:
    system.start_api()
    with Client(system.url) as c:
        job = parked(c)
        answered: dict[str, Any] = {}

        def hold() -> None:
            answered["status"] = c.status(job, wait=30)
            answered["at"] = time.monotonic()

        thread = threading.Thread(target=hold)
        thread.start()
        time.sleep(0.5)
        assert system.api is not None
        stopped_at = time.monotonic()
        system.api.send_signal(signal.SIGTERM)
        system.api.wait(15)
        exited_after = time.monotonic() - stopped_at
        thread.join(15)
    assert answered["status"].status is State.PENDING
    assert answered["at"] - stopped_at < 2, exited_after
    assert exited_after < 10, exited_after


def test_server_down_retries_then_connection_error() -> None:
    counting = Counting()
    down = Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01, transport=counting)
    with pytest.raises(APIConnectionError) as failed:
        down.health()
    assert isinstance(failed.value, ConnectionError)
    assert isinstance(failed.value, APIError)
    assert failed.value.status_code is None
    assert "cannot reach the aijobs API" in failed.value.detail
    assert "3 attempts" in str(failed.value)
    assert counting.calls == 3


def test_busy_server_is_retried_and_then_reported() -> None:
    answers = iter(
        [
            httpx.Response(
                503,
                headers={"Retry-After": "0"},
                json={"error": "Service unavailable", "detail": "store down", "status_code": 503},
            ),
            httpx.Response(200, json={"status": "healthy"}),
        ]
    )
    ok = Client("http://test", transport=httpx.MockTransport(lambda _: next(answers)))
    assert ok.health() == {"status": "healthy"}
    always = httpx.MockTransport(
        lambda _: httpx.Response(
            503, json={"error": "Service unavailable", "detail": "store down", "status_code": 503}
        )
    )
    with pytest.raises(APIError) as busy:
        Client("http://test", retries=1, backoff=0.01, transport=always).health()
    assert busy.value.status_code == 503
    assert busy.value.detail == "store down"


def test_a_retried_submission_never_makes_a_second_job(live: System, client: Client) -> None:
    before = client.list_page(limit=1).total
    lossy = Lossy("POST")
    with Client(live.url, backoff=0.01, transport=lossy) as flaky:
        accepted = flaky.submit_training("inception", "/data/cifar10", {"epochs": 1})
    posts = [r for r in lossy.requests if r.method == "POST"]
    assert len(posts) == 2  # the first answer was lost after the job was made
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert client.list_page(limit=1).total == before + 1
    assert client.status(accepted.job_id).status is State.PENDING
    # Each logical submission has its own key (two jobs); an explicit key is honoured.
    second = client.submit_training("inception", "/data/cifar10", {"epochs": 1})
    key = "k-" + accepted.job_id
    again = client.submit_training("inception", "/data/cifar10", idempotency_key=key)
    same = client.submit_training("inception", "/data/cifar10", idempotency_key=key)
    assert len({accepted.job_id, second.job_id, again.job_id}) == 3
    assert same.job_id == again.job_id
    for job in (accepted.job_id, second.job_id, again.job_id):
        client.cancel(job)


def test_a_retried_cancel_that_landed_reports_the_cancel(live: System, client: Client) -> None:
    job = parked(client)
    with Client(live.url, backoff=0.01, transport=Lossy("DELETE")) as flaky:
        assert flaky.cancel(job).status is State.CANCELLED


def test_list_pages_through_everything(client: Client) -> None:
    total = client.list_page(limit=1).total
    ids = [row["job_id"] for row in client.list(page_size=2)]
    assert len(ids) == len(set(ids)) == total
    cancelled = list(client.list(status="cancelled", page_size=1))
    assert cancelled
    assert all(row["status"] == "cancelled" for row in cancelled)
    queues = {q["queue"]: q for q in client.queues()}
    assert queues["sklearn"]["has_worker"]
    assert not queues["tensorflow"]["has_worker"]
    assert client.workers()
    assert client.health()["status"] == "healthy"


async def test_async_client(live: System, model_id: str) -> None:
    async with AsyncClient(live.url) as c:
        job = await c.submit_inference(model_id, "5.1,3.5,1.4,0.2")
        done = await c.wait(job.job_id, timeout=60)
        assert done.status is State.COMPLETED
        assert done.result is not None
        assert done.result["predictions"] == ["setosa"]
        seen = [update async for update in c.watch(job.job_id)]
        assert [s.status for s in seen] == [State.COMPLETED]
        total = (await c.list_page(limit=1)).total
        rows = [row async for row in c.list(page_size=3)]
        assert len({r["job_id"] for r in rows}) == len(rows) == total
        with pytest.raises(NotFoundError):
            await c.status("job_nope")
        parked_id = (await c.submit_training("inception", "/data/cifar10")).job_id
        started = time.monotonic()
        assert (await c.status(parked_id, wait=0.5)).status is State.PENDING
        assert time.monotonic() - started >= 0.45
        waiting = asyncio.create_task(c.wait(parked_id, timeout=30))
        await asyncio.sleep(0.2)
        await c.cancel(parked_id)
        assert (await asyncio.wait_for(waiting, 2)).status is State.CANCELLED
    down = AsyncClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    with pytest.raises(APIConnectionError):
        await down.health()
    await down.aclose()


# -- the spec's example client -----------------------------------------------------------------
@contextmanager
def stand_in_worker(system: System, queue: str) -> Iterator[list[str]]:
    """Serves `queue` through the JobStore contract, as a worker does (claim, then finish).

    The spec's example trains `bert`, which routes to pytorch-2.1-cpu; no worker for it runs in
    this test system, so this stand-in completes those jobs with a result at once.
    """
    stop = threading.Event()
    served: list[str] = []

    async def serve() -> None:
        settings = Settings(home=system.home, store_url="", data_roots=str(system.data))
        store = open_store(settings.resolved_store_url)
        await store.open()
        try:
            while not stop.is_set():
                for claim in await store.claim([queue], "stand-in", 30):
                    result = {
                        "model_id": f"bert_model_{claim.job.id[4:12]}",
                        "framework": "pytorch",
                        "metrics": {"accuracy": 0.9, "training_time": 0.01},
                    }
                    assert await store.finish(claim.job.id, claim.token, result)
                    served.append(claim.job.id)
                await asyncio.sleep(0.02)
        finally:
            await store.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        stop.set()
        thread.join(10)


def test_spec_example_is_verbatim() -> None:
    assert SPEC_PYTHON_EXAMPLE in SPEC.read_text()


def test_spec_python_example_runs_unchanged(
    live: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import requests.api

    send = requests.api.request

    def to_live_server(method: str, url: str, **kwargs: Any) -> Any:
        # The example talks to http://localhost:8000; this system listens on a free port.
        return send(method, url.replace("http://localhost:8000", live.url, 1), **kwargs)

    real_sleep = time.sleep
    monkeypatch.setattr(requests.api, "request", to_live_server)
    monkeypatch.setattr(time, "sleep", lambda s: real_sleep(min(s, 0.1)))  # its 5 s poll
    with stand_in_worker(live, "pytorch-2.1-cpu") as served:
        exec(compile(SPEC_PYTHON_EXAMPLE, "api-reference.md", "exec"), {"__name__": "spec"})
    printed = capsys.readouterr().out
    assert printed.startswith("Training completed: {")
    assert "'status': 'completed'" in printed
    assert served[0] in printed


def test_spec_usage_runs_on_the_sdk(
    live: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example's usage, with the SDK's AIJobClient in place of the example's class."""
    usage = SPEC_PYTHON_EXAMPLE[SPEC_PYTHON_EXAMPLE.index("# Usage") :]
    monkeypatch.setenv("AIJOBS_URL", live.url)
    with stand_in_worker(live, "pytorch-2.1-cpu") as served:
        started = time.monotonic()
        exec("from aijobs.client import AIJobClient\n" + usage, {"__name__": "spec"})
        took = time.monotonic() - started
    printed = capsys.readouterr().out
    assert "'status': 'completed'" in printed
    assert served[0] in printed
    assert took < 3, took  # the long-poll sees the end at once (the example polls every 5 s)


def test_aijobclient_speaks_the_spec_with_dicts(live: System, model_id: str) -> None:
    c = AIJobClient(live.url)
    job = c.submit_inference_job(model_id, "5.1,3.5,1.4,0.2", parameters={"probability": True})
    assert isinstance(job, dict)
    assert job["status"] == "queued"
    final = c.wait_for_completion(job["job_id"], timeout=60)
    assert isinstance(final, dict)
    assert final["status"] == "completed"
    assert final["result"]["predictions"] == ["setosa"]
    assert c.get_job_status(job["job_id"])["status"] == "completed"
    pending = c.submit_training_job(model_type="resnet", data_path="/data/image_classification")
    c.cancel(pending["job_id"])
    assert c.wait_for_completion(pending["job_id"], timeout=5)["status"] == "cancelled"
    with pytest.raises(NotFoundError):
        c.get_job_status("job_nope")
