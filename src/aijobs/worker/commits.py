"""A job's last writes: finish or fail with the worker's own token, and the publishing of a
trained model. Every write a worker makes for a job it holds (and the model lookup its
inference needs) goes through one policy: retried through a store outage while the lease could
still be ours; the fencing token makes a retry safe."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from aijobs import artifacts, errors
from aijobs.jobs import Finish, ModelRecord, Progress, Renewal, State, now
from aijobs.settings import Settings
from aijobs.store import JobStore
from aijobs.worker.protocol import TrainingOutcome
from aijobs.worker.running import Clock, EventLog, Running

T = TypeVar("T")

STORE_RETRY_SECONDS = 2.0


class Commits:
    """Writes the outcome of the jobs a worker holds; never once the store told it a job is
    not its own (the job's stop_reason is then set)."""

    def __init__(
        self, settings: Settings, store: JobStore, worker_id: str, clock: Clock, log: EventLog
    ) -> None:
        self.settings = settings
        self.store = store
        self.worker_id = worker_id
        self.clock = clock
        self.log = log

    async def write(
        self, held: Running, outcome: Literal["finish", "fail"], error: str = "", **kw: Any
    ) -> bool:
        """Finish or fail with our token; never after the store told us the job is not ours."""
        if held.stop_reason is not None:
            return False
        held.committing = True
        job_id, token = held.job.id, held.claim.token

        async def write(again: bool) -> bool:
            if outcome == "fail":
                return await self.store.fail(job_id, token, error, **kw)
            if again and await self.landed(held):
                return True
            return await self.store.finish(job_id, token, **kw)

        ok = await self.despite_outages(write, f"job {outcome}", [held])
        level = logging.INFO if held.training or not ok or error else logging.DEBUG
        self.log(f"job {outcome}", level, job=held.job.id, accepted=ok, error=error or None)
        return bool(ok)

    async def finish_many(self, done: list[tuple[Running, dict[str, Any]]]) -> None:
        """Finish a batch of jobs in one round trip (each job still on its own token)."""
        done = [(held, result) for held, result in done if held.stop_reason is None]
        if not done:
            return
        for held, _ in done:
            held.committing = True
        helds = [held for held, _ in done]

        async def write(again: bool) -> list[bool]:
            landed = [again and await self.landed(held) for held in helds]
            todo = [
                Finish(h.job.id, h.claim.token, r)
                for (h, r), ok in zip(done, landed, strict=True)
                if not ok
            ]
            answers = iter(await self.store.finish_many(todo))
            return [ok or next(answers) for ok in landed]

        answers = await self.despite_outages(write, "job finish", helds) or [False] * len(helds)
        # One line for the batch (thousands of jobs a second), one for each job refused.
        accepted = [held.job.id for held, ok in zip(helds, answers, strict=True) if ok]
        if accepted:
            self.log("jobs finish", jobs=",".join(accepted), accepted=True)
        for held, ok in zip(helds, answers, strict=True):
            if not ok:
                self.log("job finish", job=held.job.id, accepted=False)

    async def despite_outages(
        self, call: Callable[[bool], Awaitable[T]], what: str, helds: list[Running]
    ) -> T | None:
        """A job's last write, retried through a store outage while the lease could still be
        ours (a finished job must not turn into a failed one); None once it cannot be: the
        job is then rescued and runs again. `call(again)`: again is True on a retry, when the
        first try may have landed and only its reply was lost."""
        deadline = self.clock.monotonic() + self.settings.lease_seconds
        again = False
        while True:
            try:
                return await call(again)
            except errors.StoreUnavailable as exc:
                again = True
                if self.clock.monotonic() > deadline:
                    for held in helds:
                        self.log(f"{what} abandoned", job=held.job.id, error=exc.detail)
                    return None
                await self.clock.sleep(STORE_RETRY_SECONDS)

    async def landed(self, held: Running) -> bool:
        """Whether this worker's own finish of `held` is in the store (a reply was lost)."""
        job = await self.store.get(held.job.id)
        ours = job.owner == self.worker_id and job.attempt == held.job.attempt
        return ours and job.state is State.COMPLETED

    async def land_last_progress(self, held: Running) -> bool:
        """Write the last progress report and the rest of the job's log before its outcome
        (through outages, like every write); False when the job turned out not to be ours
        any more."""
        if held.stop_reason is not None:
            return False
        report = held.report(final=True)
        if report is None:
            return True
        leases: dict[str, tuple[str, Progress | None]] = {held.job.id: (held.claim.token, report)}

        async def renew(_: bool) -> dict[str, Renewal]:
            return await self.store.renew(self.worker_id, leases, self.settings.lease_seconds)

        answers = await self.despite_outages(renew, "job progress", [held])
        ok = answers is not None and answers.get(held.job.id) is Renewal.OK
        if ok:
            held.reported(report)
        return ok

    async def publish(
        self,
        held: Running,
        model_id: str,
        model_dir: Path,
        attempt_dir: Path,
        device: str,
    ) -> None:
        """A training job that succeeded: its model, written in model_dir's staging directory,
        moved into place and recorded, then the job finished."""
        job = held.job
        if not await self.land_last_progress(held):
            self.log("job finish", job=job.id, accepted=False)
            shutil.rmtree(artifacts.staging_dir(model_dir), ignore_errors=True)  # not ours now
            return
        outcome = TrainingOutcome.read(attempt_dir)
        # Hashing (and fsyncing) a model of gigabytes takes longer than a lease: off the event
        # loop, so that renewals of this and every other held job keep going.
        staging = artifacts.staging_dir(model_dir)
        sha256 = await asyncio.to_thread(artifacts.checksum, staging)
        record = ModelRecord(
            model_id=model_id,
            framework=outcome.framework,
            framework_version=outcome.framework_version,
            queue=job.queue,
            model_type=job.model_type or "",
            path=str(model_dir),
            job_id=job.id,
            sha256=sha256,
            metrics=outcome.metrics,
            created_at=now(),
            principal=job.principal,
        )
        metadata = {**record.model_dump(), "info": outcome.info}
        # Durable under its final name before the record that names it is committed.
        await asyncio.to_thread(artifacts.publish, staging, model_dir, metadata)
        result = {
            "model_id": model_id,
            "model_path": str(model_dir),
            "framework": outcome.framework,
            "framework_version": outcome.framework_version,
            "device": device,
            "metrics": outcome.metrics,
            **outcome.info,
        }
        if await self.write(held, "finish", result=result, model=record):
            # Resume state is only for a rescued run; a committed job never resumes.
            shutil.rmtree(self.settings.jobs_dir / job.id / "checkpoint", ignore_errors=True)
        else:
            shutil.rmtree(model_dir, ignore_errors=True)  # stale: another attempt owns the job
