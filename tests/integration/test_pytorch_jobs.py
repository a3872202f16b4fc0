"""The spec's PyTorch examples against the real server and real pytorch-2.1-cpu / pytorch-2.0-cpu
workers: train on the demo data, watch per-epoch history, then serve inference with the model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from tests.integration.harness import System, child_pids, wait_until

pytestmark = pytest.mark.torch

TIMEOUT = 240
BERT_SPEC = {
    "model_type": "bert",
    "data_path": "/data/sentiment_analysis.csv",
    "hyperparameters": {"epochs": 5, "learning_rate": 0.0001, "batch_size": 16, "max_length": 512},
    "description": "Fine-tune BERT for sentiment analysis",
    "requires_gpu": False,
    "framework_override": "pytorch-2.1",
}
IMAGE = "/data/image_classification/digit_3/digit_3_004.png"


@pytest.fixture(scope="module")
def torch_system(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[System]:
    """API + one worker per PyTorch CPU queue, and a GPU-queue worker allowed to use the CPU."""
    s = System(
        home=tmp_path_factory.mktemp("torch") / "var",
        data=demo_root,
        env_overrides={"AIJOBS_ALLOW_MISSING_GPU": "1"},
    )
    try:
        s.start_api()
        s.start_worker("pytorch-2.1-cpu")
        s.start_worker("pytorch-2.0-cpu")
        s.start_worker("pytorch-2.1-gpu")
        yield s
    finally:
        s.stop_all()


def trained(s: System, body: dict[str, Any]) -> dict[str, Any]:
    done = s.wait(s.submit("/jobs/training", body), timeout=TIMEOUT)
    assert done["status"] == "completed", done
    return done


def infer(s: System, model_id: str, input_data: str, **parameters: Any) -> dict[str, Any]:
    body = {"model_id": model_id, "input_data": input_data, "parameters": parameters}
    return s.wait(s.submit("/jobs/inference", body), timeout=TIMEOUT)


def test_the_spec_bert_example_trains_and_labels_text(torch_system: System) -> None:
    accepted = torch_system.post("/jobs/training", json=BERT_SPEC)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["queue"] == "pytorch-2.1-cpu"
    assert accepted.json()["queue_has_worker"] is True
    done = torch_system.wait(accepted.json()["job_id"], timeout=TIMEOUT)
    assert done["status"] == "completed", done
    assert done["progress"] == 1.0
    assert [h["epoch"] for h in done["history"]] == [1, 2, 3, 4, 5]
    assert all({"train_loss", "val_loss", "accuracy"} <= set(h) for h in done["history"])
    result = done["result"]
    assert result["framework"] == "pytorch"
    assert result["framework_version"] == torch.__version__
    assert result["device"] == "cpu"
    assert result["model_id"].startswith("bert_model_")
    assert result["metrics"]["training_time"] > 0
    assert 0 <= result["metrics"]["accuracy"] <= 1
    assert result["max_length"] == 512
    assert result["classes"] == ["negative", "positive"]

    out = infer(
        torch_system,
        result["model_id"],
        "This is a great product!",
        temperature=0.7,
        max_length=100,
    )
    assert out["status"] == "completed", out
    assert out["queue"] == "pytorch-2.1-cpu"
    assert out["result"]["label"] in ("positive", "negative")
    assert out["result"]["framework"] == "pytorch"


def test_bert_learns_sentiment(torch_system: System) -> None:
    hp = {"hidden_size": 64, "num_layers": 1, "max_length": 32}  # else the defaults
    done = trained(
        torch_system,
        {"model_type": "bert", "data_path": "/data/training.csv", "hyperparameters": hp},
    )
    assert done["result"]["metrics"]["accuracy"] > 0.8, done["result"]["metrics"]
    model_id = done["result"]["model_id"]
    out = infer(torch_system, model_id, "This is a great product!\nAn awful, boring movie.")
    assert out["result"]["predictions"] == ["positive", "negative"], out
    again = infer(torch_system, model_id, "What a lovely hotel!")
    assert again["result"]["label"] == "positive"
    assert again["result"]["cached_model"] is True


def test_resnet_trains_on_the_image_folder_and_gives_top_k(torch_system: System) -> None:
    body = {
        "model_type": "resnet",
        "data_path": "/data/image_classification",
        "hyperparameters": {
            "epochs": 6,
            "learning_rate": 0.003,
            "batch_size": 32,
            "num_classes": 1000,
            "width": 8,
            "image_size": 16,
        },
        "description": "Train ResNet for image classification",
        "requires_gpu": False,
        "framework_override": "pytorch-2.0",
    }
    done = trained(torch_system, body)
    assert done["queue"] == "pytorch-2.0-cpu"
    assert len(done["history"]) == 6
    result = done["result"]
    assert result["metrics"]["accuracy"] > 0.5, result["metrics"]  # chance is 0.1
    assert result["num_classes"] == 10
    assert result["architecture"] == "resnet-18"
    assert any("num_classes 1000" in note for note in result["notes"])

    out = infer(torch_system, result["model_id"], IMAGE, top_k=5, confidence_threshold=0.0)
    assert out["status"] == "completed", out
    ranked = out["result"]["top_k"][0]
    assert len(ranked) == 5
    assert out["result"]["label"] == ranked[0]["label"]
    assert [r["probability"] for r in ranked] == sorted(
        (r["probability"] for r in ranked), reverse=True
    )
    refused = infer(torch_system, result["model_id"], "/etc/passwd", top_k=5)
    assert refused["status"] == "failed"
    assert "outside the data roots" in refused["error"]


def test_transformer_continues_a_prompt(torch_system: System) -> None:
    hp = {"epochs": 3, "batch_size": 4, "learning_rate": 0.002, "max_length": 64, "hidden_size": 64}
    done = trained(
        torch_system,
        {"model_type": "transformer", "data_path": "/data/text_generation", "hyperparameters": hp},
    )
    result = done["result"]
    assert result["metrics"]["perplexity"] < result["vocab_size"] / 10
    out = infer(
        torch_system, result["model_id"], "The model", temperature=0.7, max_length=20, seed=1
    )
    assert out["status"] == "completed", out
    assert out["result"]["generated_text"]
    assert out["result"]["text"].startswith("The model")
    too_long = infer(torch_system, result["model_id"], "the queue waits " * 60)
    assert too_long["status"] == "failed"
    assert "context is 64 tokens" in too_long["error"]


def test_bad_input_fails_the_job_clearly(torch_system: System) -> None:
    missing_column = torch_system.wait(
        torch_system.submit(
            "/jobs/training",
            {
                "model_type": "bert",
                "data_path": "/data/sentiment_analysis.csv",
                "hyperparameters": {"text_column": "review"},
            },
        ),
        timeout=TIMEOUT,
    )
    assert missing_column["status"] == "failed"
    assert "text column 'review'" in missing_column["error"]
    assert "its columns are: text, label" in missing_column["error"]

    wrong_type = torch_system.post(
        "/jobs/training",
        json={
            "model_type": "vgg",
            "data_path": "/data/cifar10",
            "hyperparameters": {"epochs": "ten", "depth": 12},
        },
    )
    assert wrong_type.status_code == 422  # refused at submission, by the runtime's own check
    assert "'epochs' must be an integer" in wrong_type.json()["detail"]
    assert "'depth'" in wrong_type.json()["detail"]


def test_cancel_stops_a_training_job_promptly(torch_system: System) -> None:
    job = torch_system.submit(
        "/jobs/training",
        {
            "model_type": "vgg",
            "data_path": "/data/image_classification",
            "hyperparameters": {"epochs": 500},
        },
    )
    wait_until(
        lambda: torch_system.status(job)["status"] == "running" and child_pids(job),
        60,
        "the training child",
    )
    wait_until(lambda: (torch_system.status(job)["progress"] or 0) > 0.05, 120, "first steps")
    assert torch_system.delete(f"/jobs/{job}").status_code == 200
    stopped = time.monotonic()
    wait_until(lambda: not child_pids(job), 15, "the child to be killed")
    assert time.monotonic() - stopped < 15
    assert torch_system.status(job)["status"] == "cancelled"


def test_a_gpu_job_says_which_device_ran_it(torch_system: System) -> None:
    hp = {"epochs": 1, "hidden_size": 32, "num_layers": 1, "max_length": 32}
    done = trained(
        torch_system,
        {
            "model_type": "bert",
            "data_path": "/data/training.csv",
            "hyperparameters": hp,
            "requires_gpu": True,
        },
    )
    assert done["queue"] == "pytorch-2.1-gpu"
    result = done["result"]
    if torch.cuda.is_available():
        assert result["device"].startswith("cuda:")
    else:  # the worker was allowed to serve its GPU queue without CUDA, and the job says so
        assert result["device"] == "cpu"
        assert "CUDA is not available" in result["notes"][0]
