"""Training jobs: one child process each, on a GPU of its own when the job gets one."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from aijobs import artifacts, routing
from aijobs.jobs import Progress
from aijobs.runtimes.choice import RuntimeChoice
from aijobs.settings import Settings
from aijobs.store.stats import FailureReason
from aijobs.worker.commits import Commits
from aijobs.worker.logs import LogFollower
from aijobs.worker.protocol import (
    EXIT_JOB_FAILURE,
    EXIT_OK,
    ProgressReport,
    TrainingError,
    TrainingSpec,
)
from aijobs.worker.running import EventLog, Running, TrainingChild, log, time_limit
from aijobs.worker.supervisor import TrainingProcess

# How a training child is started: (spec, log, progress callback, GPU) -> the child, not yet
# started. TrainingProcess runs the real one; tests pass a fake at this boundary.
SpawnChild = Callable[[Path, Path, Callable[[ProgressReport], None], str | None], TrainingChild]


def device_for(held: Running) -> str:
    """A GPU queue's jobs ask for CUDA (AIJOBS_ALLOW_MISSING_GPU aside, a GPU is there);
    elsewhere a job gets it with a GPU of its own."""
    return "cuda" if routing.QUEUES[held.job.queue].gpu or held.gpu is not None else "cpu"


def child_error(attempt_dir: Path, code: int) -> str:
    if code < 0:
        return f"training process was killed by signal {signal.Signals(-code).name}"
    try:
        return TrainingError.read(attempt_dir).error
    except (OSError, ValueError):
        kind = "failed" if code == EXIT_JOB_FAILURE else "crashed"
        return f"training process {kind} with exit code {code}; see the job's log"


class Training:
    """Runs the worker's training jobs, one child each; hands out its GPUs, one per job."""

    def __init__(
        self,
        settings: Settings,
        commits: Commits,
        log: EventLog,
        free_gpus: list[str],
        on_progress: Callable[[], None],
        runtime: str | None = None,
        spawn: SpawnChild = TrainingProcess,
    ) -> None:
        self.settings = settings
        self.commits = commits
        self.log = log
        self.free_gpus = free_gpus  # one training job per GPU: CUDA_VISIBLE_DEVICES is its own
        self.on_progress = on_progress  # a report came in: send it with the next renewal
        self.runtimes = RuntimeChoice(runtime)  # with one: it serves every queue
        self.spawn = spawn
        self.data_roots = [str(r) for r in settings.roots]

    async def run(self, held: Running) -> None:
        """A training job, start to end."""
        job = held.job
        self.log("job started", job=job.id, type=job.job_type, attempt=job.attempt)
        try:
            await self._train(held)
        except Exception as exc:  # a bug here must not kill the worker or strand the job
            log.exception("job %s crashed in the worker", job.id)
            error = f"worker error: {type(exc).__name__}: {exc}"
            await self.commits.write(held, "fail", error, reason=FailureReason.CRASHED)
        finally:
            if held.gpu is not None:
                self.free_gpus.append(held.gpu)

    def _take_gpu(self, held: Running) -> None:
        queue = routing.QUEUES[held.job.queue]
        requested = queue.gpu_on_request and bool(held.job.payload.get("requires_gpu"))
        if (queue.gpu or requested) and self.free_gpus:
            held.gpu = self.free_gpus.pop(0)

    async def _train(self, held: Running) -> None:
        job = held.job
        model_type = job.model_type or ""
        runtime = self.runtimes.runtime_for(job.queue, model_type)
        if runtime is None:  # a model type outside the catalogue that no plugin here declares
            await self.commits.write(held, "fail", self.runtimes.refusal(job.queue, model_type))
            return
        model_id = artifacts.model_id_for(model_type, job.id)
        model_dir = artifacts.attempt_model_dir(self.settings.models_dir, model_id, job.attempt)
        attempt_dir = self.settings.jobs_dir / job.id / f"attempt-{job.attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        staging = artifacts.staging_dir(model_dir)  # published to model_dir once it succeeds
        for leftover in (model_dir, staging):  # of a try of this attempt that never committed
            if leftover.exists():
                shutil.rmtree(leftover)
        self._take_gpu(held)
        spec = TrainingSpec(
            job_id=job.id,
            attempt=job.attempt,
            payload=job.payload,
            runtime=runtime,
            model_dir=str(staging),
            checkpoint_dir=str(self.settings.jobs_dir / job.id / "checkpoint"),
            data_roots=self.data_roots,
            device=device_for(held),
        )
        spec_path = attempt_dir / "spec.json"
        spec.write(spec_path)
        log_path = attempt_dir / "log.txt"
        # Its output goes to the store with the renewals, after the earlier runs' output.
        held.log = LogFollower(log_path, job.log_length, self.settings.log_keep_chars)

        def on_progress(report: ProgressReport) -> None:
            held.progress = Progress(
                fraction=report.fraction, metrics=report.metrics, history=report.history
            )
            self.on_progress()

        child = self.spawn(spec_path, log_path, on_progress, held.gpu)
        held.child = child
        await child.start()
        limit = time_limit(job, self.settings)
        try:
            code = await asyncio.wait_for(child.wait(), limit)
        except TimeoutError:
            await child.kill(self.settings.kill_grace_seconds)
            await self.commits.land_last_progress(held)
            await self.commits.write(
                held,
                "fail",
                f"job timed out after {limit:g} seconds and was stopped",
                reason=FailureReason.TIMEOUT,
            )
            shutil.rmtree(staging, ignore_errors=True)
            return
        if held.stop_reason is not None:
            await held.stopped.wait()
            shutil.rmtree(staging, ignore_errors=True)  # not ours to publish
            return
        if code == EXIT_OK:
            await self.commits.publish(held, model_id, model_dir, attempt_dir, device_for(held))
            return
        error = child_error(attempt_dir, code)
        # A child killed by a signal (OOM killer, SIGKILL) may succeed on another try;
        # a job that failed on its own input or code will fail the same way again.
        reason = FailureReason.ERROR if code == EXIT_JOB_FAILURE else FailureReason.CRASHED
        await self.commits.land_last_progress(held)
        await self.commits.write(held, "fail", error, retry=code < 0, reason=reason)
        shutil.rmtree(staging, ignore_errors=True)
