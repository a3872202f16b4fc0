"""What the dashboard stands on, in process on a real SQLite store: the page and its files at `/`
(served without credentials, under a policy that allows this server's scripts only), GET /routing
(the routing of a submission, without submitting), and a model's size on /models. The page
itself runs in a real browser in tests/integration/test_dashboard.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aijobs.api.app import create_app
from aijobs.api.routes.dashboard import STATIC
from aijobs.jobs import ModelRecord, WorkerInfo, now
from aijobs.runtimes.choice import RuntimeChoice
from aijobs.settings import Settings
from tests.auth_support import LOCAL, add_key


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("a,label\n1,x\n")
    return Settings(home=tmp_path / "var", data_roots=str(data))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        yield c


def test_the_page_and_its_files_are_served_without_credentials(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "var", data_roots=str(tmp_path), auth="required")
    add_key(settings, "ops", admin=True)
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        page = c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "unsafe-inline" not in policy  # no inline script could run
        assert 'type="module" src="static/js/main.js"' in page.text
        # Every file the page names is served, and every module a module imports.
        names = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
        for js in STATIC.glob("js/*.js"):
            names += [f"static/js/{m}" for m in re.findall(r'from "\./([^"]+)"', js.read_text())]
        assert len(names) > 5
        for name in names:
            served = c.get(f"/{name}")
            assert served.status_code == 200, name
            assert served.headers["content-security-policy"] == policy
        assert c.get("/static/nothing.js").status_code == 404
        assert c.get("/static/../settings.py").status_code == 404
        assert c.get("/jobs").status_code == 401  # the data behind the page needs a key


def test_the_chart_library_ships_with_its_licence() -> None:
    vendored = list((STATIC / "vendor").iterdir())
    assert [v.name for v in vendored] == ["uplot-1.6.32"]  # the pinned version, in its name
    files = {f.name for f in vendored[0].iterdir()}
    assert files == {"LICENSE", "uPlot.iife.min.js", "uPlot.min.css"}
    assert "MIT License" in (vendored[0] / "LICENSE").read_text()


def test_the_page_never_writes_api_text_as_markup() -> None:
    for js in STATIC.glob("js/*.js"):
        source = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in source, (js.name, sink)


@pytest.mark.parametrize(
    ("params", "queue"),
    [
        ({"model_type": "bert"}, "pytorch-2.1-cpu"),
        ({"model_type": "resnet", "requires_gpu": "true"}, "pytorch-2.0-gpu"),
        ({"model_type": "resnet", "framework_override": "pytorch-2.1"}, "pytorch-2.1-cpu"),
        ({"model_type": "svm", "requires_gpu": "true"}, "sklearn"),
        ({"model_type": "quantum_forest"}, "pytorch-2.1-cpu"),
        ({"model_type": "quantum_forest", "framework_override": " TensorFlow "}, "tensorflow"),
    ],
)
def test_routing_answers_where_a_submission_goes(
    client: TestClient, params: dict[str, str], queue: str
) -> None:
    answer = client.get("/routing", params=params)
    assert answer.status_code == 200, answer.json()
    assert answer.json()["queue"] == queue
    assert answer.json()["has_worker"] is False
    body: dict[str, object] = {"data_path": "x.csv", **params}
    body["requires_gpu"] = params.get("requires_gpu") == "true"
    submitted = client.post("/jobs/training", json=body)
    assert submitted.status_code == 200, submitted.json()
    assert submitted.json()["queue"] == queue  # one routing table for both


def test_routing_says_whether_a_live_worker_serves_the_queue(client: TestClient) -> None:
    worker = WorkerInfo(
        worker_id="w1", host="h", pid=1, queues=["sklearn"], started_at=now(), last_seen=now()
    )
    client.portal.call(client.app.state.store.register_worker, worker)  # type: ignore[attr-defined,union-attr]
    answer = client.get("/routing", params={"model_type": "svm"}).json()
    assert answer == {"queue": "sklearn", "label": "Scikit-learn", "gpu": False, "has_worker": True}


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"model_type": "bert", "framework_override": "jax"}, 400, "unknown framework_override"),
        ({"model_type": "bert", "framework_override": "sklearn"}, 400, "cannot train"),
        ({}, 422, "model_type"),
        ({"model_type": "a b"}, 422, "model_type"),
        ({"model_type": "x" * 65}, 422, "model_type"),
        ({"model_type": "bert", "requires_gpu": "maybe"}, 422, "requires_gpu"),
    ],
)
def test_bad_routing_questions_get_the_envelope(
    client: TestClient, params: dict[str, str], code: int, words: str
) -> None:
    answer = client.get("/routing", params=params)
    assert answer.status_code == code
    body = answer.json()
    assert set(body) == {"error", "detail", "status_code"}
    assert words in body["detail"]


def test_a_model_says_its_size_where_its_files_are_seen(client: TestClient, tmp_path: Path) -> None:
    files = tmp_path / "models" / "m1"
    (files / "weights").mkdir(parents=True)
    (files / "model.pt").write_bytes(b"x" * 1000)
    (files / "weights" / "part").write_bytes(b"y" * 24)
    store = client.app.state.store  # type: ignore[attr-defined]
    for model_id, path in (("m1", files), ("m2", tmp_path / "elsewhere")):
        record = ModelRecord(
            model_id=model_id,
            framework="pytorch",
            queue="pytorch-2.1-cpu",
            model_type="bert",
            path=str(path),
            job_id="job_1",
            created_at=time.time(),
        )
        client.portal.call(store.add_model, record)  # type: ignore[union-attr]
    assert client.get("/models/m1").json()["size_bytes"] == 1024
    assert client.get("/models/m2").json()["size_bytes"] is None  # on another host
    listed = {m["model_id"]: m["size_bytes"] for m in client.get("/models").json()["models"]}
    assert listed == {"m1": 1024, "m2": None}


def test_workers_say_their_device_and_framework_versions(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    fields = {"host": "h", "pid": 1, "started_at": now(), "last_seen": now()}
    gpu = WorkerInfo(
        worker_id="w1",
        queues=["pytorch-2.1-gpu"],
        gpus=["0", "1"],
        frameworks={"pytorch": "2.1.2"},
        **fields,
    )
    older = WorkerInfo(worker_id="w2", queues=["sklearn"], **fields)
    for worker in (gpu, older):
        client.portal.call(store.register_worker, worker)  # type: ignore[union-attr]
    shown = {w["worker_id"]: w for w in client.get("/workers").json()["workers"]}
    assert shown["w1"]["gpus"] == ["0", "1"]
    assert shown["w1"]["frameworks"] == {"pytorch": "2.1.2"}
    assert (shown["w2"]["gpus"], shown["w2"]["frameworks"]) == ([], {})


def test_a_worker_reads_its_framework_versions_without_importing_them() -> None:
    choice = RuntimeChoice()
    assert choice.versions(["sklearn"]) == {"sklearn": metadata.version("scikit-learn")}
    both = choice.versions(["sklearn", "sklearn"])
    assert list(both) == ["sklearn"]
    assert RuntimeChoice("sklearn").versions(["pytorch-2.1-cpu"]) == both  # --runtime serves all
