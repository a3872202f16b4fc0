"""The spec's scikit-learn examples, verbatim, against the real server and a real worker."""

from __future__ import annotations

import re

from tests.integration.harness import System

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

RANDOM_FOREST = {
    "model_type": "random_forest",
    "data_path": "/data/tabular_data.csv",
    "hyperparameters": {
        "n_estimators": 100,
        "max_depth": 10,
        "min_samples_split": 5,
        "random_state": 42,
    },
    "description": "Train Random Forest for classification",
    "requires_gpu": False,
    "framework_override": "sklearn",
}


def test_health(running: System) -> None:
    body = running.get("/health").json()
    assert body["status"] == "healthy"
    assert body["version"] == "1.0.0"
    assert ISO_Z.match(body["timestamp"])
    store = running.get("/health/redis")
    assert store.status_code == 200
    assert store.json()["store"] == "sqlite"
    assert store.json()["redis"] == "not configured"


def test_random_forest_then_inference(running: System) -> None:
    r = running.post("/jobs/training", json=RANDOM_FOREST)
    assert r.status_code == 200, r.text
    accepted = r.json()
    assert accepted["status"] == "queued"
    assert re.match(r"^job_[0-9a-f-]{36}$", accepted["job_id"])
    assert ISO_Z.match(accepted["created_at"])
    assert re.match(r"^\d\d:\d\d:\d\d$", accepted["estimated_duration"])
    assert accepted["queue"] == "sklearn"
    assert accepted["queue_has_worker"] is True

    done = running.wait(accepted["job_id"])
    assert done["status"] == "completed", done
    assert done["progress"] == 1.0
    result = done["result"]
    assert result["framework"] == "sklearn"
    assert result["framework_version"]
    assert result["metrics"]["accuracy"] > 0.8  # iris: chance is 1/3
    assert result["metrics"]["training_time"] > 0
    assert result["model_id"].startswith("random_forest_model_")
    assert done["history"], "per-epoch history is kept"
    assert running.get(f"/jobs/{accepted['job_id']}/logs").text

    infer = running.post(
        "/jobs/inference",
        json={
            "model_id": result["model_id"],
            "input_data": "5.1,3.5,1.4,0.2",
            "parameters": {"probability": True},
        },
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["queue"] == "sklearn"
    out = running.wait(infer.json()["job_id"])
    assert out["status"] == "completed", out
    assert out["result"]["predictions"] == ["setosa"]
    probs = out["result"]["probabilities"][0]
    assert abs(sum(probs.values()) - 1) < 1e-6
    assert max(probs, key=probs.get) == "setosa"

    # the same model again is served warm from the inference process
    again = running.wait(
        running.submit(
            "/jobs/inference", {"model_id": result["model_id"], "input_data": "6.7,3.0,5.2,2.3"}
        )
    )
    assert again["result"]["predictions"] == ["virginica"]
    assert again["result"]["cached_model"] is True

    listed = running.get("/jobs", params={"status": "completed"}).json()
    assert listed["limit"] == 100
    assert listed["offset"] == 0
    assert listed["total"] == 3
    kinds = {j["job_type"]: j for j in listed["jobs"]}
    assert kinds["training"]["model_type"] == "random_forest"
    assert kinds["inference"]["model_id"] == result["model_id"]
    models = running.get("/models").json()["models"]
    assert [m["model_id"] for m in models] == [result["model_id"]]


def test_svm_and_logistic_regression(running: System) -> None:
    ids = {
        model: running.submit(
            "/jobs/training",
            {"model_type": model, "data_path": "/data/tabular_data.csv", "hyperparameters": hp},
        )
        for model, hp in (("svm", {"C": 1.0}), ("logistic_regression", {"max_iter": 500}))
    }
    for model, job_id in ids.items():
        done = running.wait(job_id)
        assert done["status"] == "completed", done
        assert done["queue"] == "sklearn"
        assert done["result"]["metrics"]["accuracy"] > 0.8, model
        out = running.wait(
            running.submit(
                "/jobs/inference",
                {"model_id": done["result"]["model_id"], "input_data": "5.0,3.4,1.5,0.2"},
            )
        )
        assert out["result"]["predictions"] == ["setosa"], model


def test_bad_hyperparameter_is_refused_clearly(running: System) -> None:
    r = running.post(
        "/jobs/training",
        json={
            "model_type": "random_forest",
            "data_path": "tabular_data.csv",
            "hyperparameters": {"n_estimators": 10, "not_a_param": 1},
        },
    )
    assert r.status_code == 422, r.text
    assert "not_a_param" in r.json()["detail"]


def test_wrong_feature_count_fails_inference_clearly(running: System) -> None:
    trained = running.wait(
        running.submit(
            "/jobs/training", {"model_type": "logistic_regression", "data_path": "tabular_data.csv"}
        )
    )
    out = running.wait(
        running.submit(
            "/jobs/inference",
            {"model_id": trained["result"]["model_id"], "input_data": "1.0,2.0,3.0"},
        )
    )
    assert out["status"] == "failed"
    assert "4 features" in out["error"]
    # the worker survived the bad input and serves the next job
    ok = running.wait(
        running.submit(
            "/jobs/inference",
            {"model_id": trained["result"]["model_id"], "input_data": "5.1,3.5,1.4,0.2"},
        )
    )
    assert ok["status"] == "completed"


def test_queue_without_worker_is_reported(running: System) -> None:
    r = running.post(
        "/jobs/training",
        json={
            "model_type": "inception",
            "data_path": "/data/cifar10",
            "framework_override": "tensorflow",
        },
    )
    assert r.status_code == 200
    assert r.json()["queue"] == "tensorflow"
    assert r.json()["queue_has_worker"] is False
    assert "no live worker" in r.json()["message"]
    assert running.status(r.json()["job_id"])["status"] == "pending"
    queues = {q["queue"]: q for q in running.get("/queues").json()["queues"]}
    assert queues["tensorflow"]["pending"] == 1
    assert not queues["tensorflow"]["has_worker"]
    assert queues["sklearn"]["has_worker"]
