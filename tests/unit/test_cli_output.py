"""What `aijobs wait` shows on its progress line while a job runs."""

from __future__ import annotations

from typing import Any

import pytest

from aijobs.api.schemas import JobStatus
from aijobs.cli.output import progress_info
from aijobs.jobs import Job, JobType, State


def status(metrics: dict[str, Any], history: list[dict[str, Any]]) -> JobStatus:
    job = Job(
        id="job_1",
        job_type=JobType.TRAINING,
        queue="pytorch-2.0-cpu",
        state=State.RUNNING,
        payload={},
        metrics=metrics,
        history=history,
        created_at=1.0,
        updated_at=1.0,
    )
    return JobStatus.of(job)


@pytest.mark.parametrize(
    ("metrics", "history", "line"),
    [
        # within epoch 8, after epoch 7 ended: the running epoch only, once
        (
            {"epoch": 8, "step": 3, "steps_per_epoch": 10, "train_loss": 0.41234},
            [{"epoch": 7, "train_loss": 0.5}],
            "epoch 8 · step 3/10 · loss 0.4123",
        ),
        # an epoch just ended: its number and loss, not its validation metrics
        ({"train_loss": 0.5, "val_accuracy": 0.9}, [{"epoch": 7}], "epoch 7 · loss 0.5"),
        ({"n_rows": 150, "n_features": 4}, [], "n_rows 150 · n_features 4"),
        ({}, [], ""),
    ],
)
def test_one_epoch_the_step_and_the_loss(
    metrics: dict[str, Any], history: list[dict[str, Any]], line: str
) -> None:
    assert progress_info(status(metrics, history)) == line
