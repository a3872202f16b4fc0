"""What a worker holds for each job it runs, and what every part of the worker shares: the
clock it keeps time by and the log it reports to."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from aijobs.jobs import Claim, Job, JobType, Progress, Renewal
from aijobs.settings import Settings
from aijobs.worker.logs import LogFollower

log = logging.getLogger("aijobs.worker")


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
    log: LogFollower | None = None  # a training job's output, sent with its renewals
    task: asyncio.Task[None] | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def job(self) -> Job:
        return self.claim.job

    @property
    def training(self) -> bool:
        return self.job.job_type is JobType.TRAINING

    def report(self, final: bool = False) -> Progress | None:
        """What a renewal carries for this job: its progress, that it started, and the output
        the store lacks (`final`: all of it, the child having ended)."""
        report = self.progress
        if self.unreported_start:
            report = (report or Progress()).model_copy(update={"started": True})
        if self.log is not None and (new := self.log.chunk(final)) is not None:
            report = (report or Progress()).model_copy(update={"log": new[0], "log_at": new[1]})
        return report

    def reported(self, report: Progress | None) -> None:
        """A renewal that carried `report` was answered OK."""
        if report is None:
            return
        if report.started:
            self.unreported_start = False
        if report.log is not None and self.log is not None:
            self.log.sent(report.log, report.log_at)


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
