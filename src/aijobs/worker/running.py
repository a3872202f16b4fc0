"""What a worker holds for each job it runs, and what every part of the worker shares: the
clock it keeps time by and the log it reports to."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from aijobs.jobs import Claim, Job, JobType, Progress, Renewal
from aijobs.settings import Settings

log = logging.getLogger("aijobs.worker")

LOG_TAIL_BYTES = 64 * 1024


class StopReason(StrEnum):
    """Why the worker stops a job before it ends: after any of them, the worker never writes
    the job's outcome (the store, or the hand-back, already has)."""

    CANCEL = "cancel"  # the user cancelled: the job is already cancelled
    LOST = "lost"  # the lease is gone (rescued, finished by someone else, or self-fenced)
    DRAINING = "draining"  # the worker is shutting down and hands the job back itself

    @classmethod
    def of(cls, renewal: Renewal) -> StopReason:
        """The stop a renewal's answer (other than OK) asks for."""
        return cls.CANCEL if renewal is Renewal.CANCEL else cls.LOST


class TrainingChild(Protocol):
    """A training job's child process (supervisor.TrainingProcess; a fake one in tests)."""

    async def start(self) -> None: ...

    async def wait(self) -> int: ...

    async def kill(self, grace: float) -> None: ...


@dataclass
class Running:
    """A job this worker holds: its claim, what to report, and how to stop it."""

    claim: Claim
    progress: Progress | None = None
    stop_reason: StopReason | None = None
    gpu: str | None = None  # the device this job holds, given back when it ends
    committing: bool = False  # finish/fail in flight: its renewals would wrongly answer LOST
    # Its run began after the claim (an inference job the child reached): the next renewal
    # tells the store, which shows the job pending until then.
    unreported_start: bool = False
    child: TrainingChild | None = None
    task: asyncio.Task[None] | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def job(self) -> Job:
        return self.claim.job

    @property
    def training(self) -> bool:
        return self.job.job_type is JobType.TRAINING


class Clock:
    """The time the worker's deadlines and back-offs run on; tests give it their own."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class EventLog:
    """One line per event, `event worker=ID key=value ...`, for people and for the tests that
    read the worker's log."""

    worker_id: str

    def __call__(self, event: str, level: int = logging.INFO, **fields: Any) -> None:
        if log.isEnabledFor(level):
            parts = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            log.log(level, "%s worker=%s %s", event, self.worker_id, parts)


def time_limit(job: Job, settings: Settings) -> float:
    return job.timeout_seconds or settings.job_timeout_seconds


def tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a job's log, stored with its outcome."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
