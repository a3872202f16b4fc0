"""The Redis store builds Jobs from its own scripts' replies without validation
(store/redis/codec.py). It gives every field itself: pydantic's `model_construct` resolves each
field left out through its default on every call, a `default_factory` by inspecting the
factory's signature, which costs an order of magnitude more than the rest of the build."""

from __future__ import annotations

from aijobs.jobs import JOB_FIELDS, Job, JobType, NewJob, State
from aijobs.store.redis.codec import decode_job, submit_args, submitted_job


def test_a_submitted_job_is_built_with_every_field_given() -> None:
    new = NewJob(
        job_type=JobType.INFERENCE,
        queue="sklearn",
        payload={"model_id": "m", "input_data": [1, 2]},
        model_id="m",
        principal="alice",
    )
    job = submitted_job(new, submit_args(new), "1700000000123")
    assert job.model_fields_set == set(Job.model_fields)
    assert (job.state, job.payload, job.created_at) == (
        State.PENDING,
        {"model_id": "m", "input_data": [1, 2]},
        1700000000.123,
    )
    assert (job.metrics, job.history, job.attempt, job.owner) == ({}, [], 0, None)


def test_a_read_job_is_built_with_every_field_given() -> None:
    record = dict.fromkeys(JOB_FIELDS) | {
        "id": "job_1",
        "job_type": "training",
        "queue": "sklearn",
        "state": "pending",
        "priority": "0",
        "attempt": "0",
        "max_attempts": "3",
        "progress": "0",
        "cancel_requested": "0",
        "created_at": "1000",
        "updated_at": "1000",
    }
    job = decode_job([record[name] for name in JOB_FIELDS])
    assert job.model_fields_set == set(Job.model_fields)
    assert (job.id, job.metrics, job.history) == ("job_1", {}, [])
