"""The worker: claims jobs for its queues, runs each in a child, keeps its leases, obeys cancels.

The store does every state change (and rescue); this process only ever writes with the fencing
token of its own claim, so a job it lost can never be changed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aijobs import artifacts, errors, routing
from aijobs.jobs import (
    Claim,
    Finish,
    Job,
    JobType,
    ModelRecord,
    Progress,
    Renewal,
    State,
    Waiter,
    WorkerInfo,
    now,
)
from aijobs.settings import Settings
from aijobs.store import JobStore
from aijobs.worker.child import EXIT_JOB_FAILURE, EXIT_OK
from aijobs.worker.preflight import gpu_devices
from aijobs.worker.supervisor import InferenceProcess, NotRun, TrainingProcess

log = logging.getLogger("aijobs.worker")
T = TypeVar("T")

LOG_TAIL_BYTES = 64 * 1024
IDLE_WAIT = 1.0  # longest sleep between claims when the store sends no wake-up
STORE_RETRY_SECONDS = 2.0
MODELS_REMEMBERED = 256  # model records kept by the worker (they never change once stored)


@dataclass
class Running:
    """A job this worker holds: its claim, what to report, and how to stop it."""

    claim: Claim
    progress: Progress | None = None
    stop_reason: Renewal | None = None  # set when the store said CANCEL or LOST
    gpu: str | None = None  # the device this job holds, given back when it ends
    committing: bool = False  # finish/fail in flight: its renewals would wrongly answer LOST
    child: TrainingProcess | None = None
    task: asyncio.Task[None] | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def job(self) -> Job:
        return self.claim.job

    @property
    def training(self) -> bool:
        return self.job.job_type is JobType.TRAINING


def tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        queues: list[str],
        concurrency: int = 1,
        runtime: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queues = queues
        self.runtime = runtime  # serve every queue with this plugin instead of the catalogue's
        self.concurrency = concurrency
        # One training job per GPU: each gets its own device through CUDA_VISIBLE_DEVICES.
        served = [routing.QUEUES[q] for q in queues]
        self.free_gpus = gpu_devices() if any(q.gpu or q.gpu_on_request for q in served) else []
        if self.free_gpus and any(q.gpu for q in served) and concurrency > len(self.free_gpus):
            log.warning("concurrency %d capped at %d GPUs", concurrency, len(self.free_gpus))
            self.concurrency = len(self.free_gpus)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[str, Running] = {}
        self.stopping = asyncio.Event()
        self.progress_flush = asyncio.Event()
        self.wakeup = asyncio.Event()  # claim again: a slot freed, the store hinted, or stop
        self.watching = asyncio.Event()  # the claim loop wants to hear of new work
        self.store_woke = False  # the store's hint came in: claim, to pass it on if not to use it
        self.started_at = now()
        self.inference = InferenceProcess(
            settings.jobs_dir / f"inference-{self.worker_id.replace(':', '_')}.log",
            settings.inference_cache_size,
        )
        self.renew_interval = settings.lease_seconds / 3
        self._stoppers: set[asyncio.Task[None]] = set()
        # Inference jobs are short: hold a few more than the training slots, so the inference
        # child always has the next one, and claim and finish them in batches.
        self.capacity = self.concurrency + settings.inference_prefetch
        self.data_roots = [str(r) for r in settings.roots]
        self.models: dict[str, asyncio.Future[ModelRecord]] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> None:
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        await self.store.register_worker(self._info())
        await self.inference.start()  # so the first inference does not pay for a process start
        self._log("worker started", queues=",".join(self.queues), concurrency=self.concurrency)
        keeper = asyncio.create_task(self._keep_leases())
        watcher = asyncio.create_task(self._watch())
        try:
            await self._claim_loop()
            # Take no more work; what the store handed over but we did not take goes back to
            # pending when we unregister below.
            await self._cancel(watcher)
            await self._drain()
        finally:
            await self._cancel(watcher)
            await self._cancel(keeper)
            await self.inference.kill()
            with contextlib.suppress(Exception):
                await self.store.unregister_worker(self.worker_id)
            self._log("worker stopped")

    def _info(self) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            running=len(self.running),
            started_at=self.started_at,
            last_seen=now(),
        )

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _request_stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    async def _claim_loop(self) -> None:
        claim_now = True  # at start, and after a full claim: there may be more
        while not self.stopping.is_set():
            room = self.capacity - len(self.running)
            free_training = self._free_training()
            claims: list[Claim] = []
            # Claim in batches: not again for each job that ends while most are still held.
            wants = room > 0 and (room * 2 >= self.capacity or not self.running)
            # Otherwise claim only on the store's hint: while the loop wants work, the watcher
            # hears of every arrival, so a freed slot alone is no reason to ask.
            store_woke, self.store_woke = self.store_woke, False
            if (wants and claim_now) or store_woke:  # limit 0: takes nothing, passes the hint on
                try:
                    claims = await self.store.claim(
                        self.queues,
                        self.worker_id,
                        self.settings.lease_seconds,
                        max(0, room),
                        max_training=max(0, free_training),
                    )
                except Exception as exc:  # store down: back off, keep running jobs going
                    self._log("claim failed", error=repr(exc))
                    await asyncio.sleep(STORE_RETRY_SECONDS)
            self._start(claims)
            claim_now = bool(claims) and len(claims) == room
            if claim_now:
                continue  # there may be more: claim again; else the queue is empty for now
            # Watch the queues only when work would be claimed (taking a hint and not claiming
            # would starve another idle worker of it); with full training slots, for inference
            # jobs only (the watcher says so to the store).
            if wants:
                self.watching.set()
            else:
                self.watching.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * IDLE_WAIT):
                    await self.wakeup.wait()
            self.wakeup.clear()

    def _free_training(self) -> int:
        return self.concurrency - sum(h.training for h in self.running.values())

    def _start(self, claims: list[Claim]) -> None:
        inference: list[Running] = []
        for claim in claims:
            held = Running(claim)
            self.running[claim.job.id] = held
            if held.training:
                held.task = asyncio.create_task(self._execute(held))
            else:
                inference.append(held)
        if inference:  # one task for the batch: its requests go to the child together
            task = asyncio.create_task(self._infer_batch(inference))
            for held in inference:
                held.task = task

    async def _watch(self) -> None:
        """Wait on the store for new work while the claim loop wants it. One task for the
        worker's life: a blocking store call is never cancelled midway (on Redis that would
        cost the connection), it just ends within IDLE_WAIT."""
        while True:
            await self.watching.wait()
            free_training = self._free_training()
            waiter = Waiter(self.worker_id, self.settings.lease_seconds, max(0, free_training))
            handed: list[Claim] = []
            try:
                handed = await self.store.wait_for_work(self.queues, IDLE_WAIT, waiter)
            except Exception:  # store down: back off; the claim loop reports it
                await asyncio.sleep(IDLE_WAIT)
            self.watching.clear()  # the claim loop says when to wait again
            if handed:  # claimed for us as it was submitted: start it, nothing to claim
                self._start(handed)
            else:
                self.store_woke = True
            self.wakeup.set()

    async def _drain(self) -> None:
        """SIGTERM: let running jobs finish within the grace period, then hand them back."""
        if not self.running:
            return
        self._log("draining", running=len(self.running))
        tasks = [h.task for h in self.running.values() if h.task is not None]
        _, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
        for held in list(self.running.values()):
            if held.task in late:
                held.stop_reason = Renewal.LOST  # we write the hand-back ourselves below
                await self._stop_child(held)
                ok = await self.store.fail(
                    held.job.id, held.claim.token, "worker shut down; job handed back", retry=True
                )
                self._log("handed back", job=held.job.id, accepted=ok)
        if late:
            await asyncio.wait(late, timeout=10)

    # -- leases --------------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        last_ok = time.monotonic()
        last_rescue = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress_flush.wait(), self.renew_interval)
                await asyncio.sleep(0.2)  # coalesce bursts of progress reports
            self.progress_flush.clear()
            try:
                await self._renew_all()
                await self.store.register_worker(self._info())
                last_ok = time.monotonic()
                if time.monotonic() - last_rescue > self.renew_interval:
                    last_rescue = time.monotonic()
                    for job_id, state in await self.store.rescue_expired():
                        self._log("rescued expired lease", job=job_id, state=state)
            except Exception as exc:
                self._log("lease renewal failed", error=repr(exc))
                fence_after = self.settings.lease_seconds - 2 * self.renew_interval
                if time.monotonic() - last_ok > fence_after:
                    # Self-fence: our leases may be gone; stop before another worker reruns them.
                    for held in list(self.running.values()):
                        self._stop(held, Renewal.LOST)

    async def _renew_all(self) -> None:
        if not self.running:
            return
        leases = {
            jid: (h.claim.token, h.progress) for jid, h in self.running.items() if not h.committing
        }
        if not leases:
            return
        for held in self.running.values():
            held.progress = None
        answers = await self.store.renew(self.worker_id, leases, self.settings.lease_seconds)
        for job_id, answer in answers.items():
            held_or_none = self.running.get(job_id)
            if held_or_none is not None and answer is not Renewal.OK:
                self._stop(held_or_none, answer)

    def _stop(self, held: Running, reason: Renewal) -> None:
        if held.stop_reason is None:
            held.stop_reason = reason
            self._log("stopping job", job=held.job.id, reason=reason)
            self._stoppers.add(task := asyncio.create_task(self._stop_child(held)))
            task.add_done_callback(self._stoppers.discard)

    async def _stop_child(self, held: Running) -> None:
        if held.child is not None:
            await held.child.kill(self.settings.kill_grace_seconds)
        elif held.job.job_type is JobType.INFERENCE:
            await self.inference.kill()
        held.stopped.set()

    # -- running jobs --------------------------------------------------------------------------
    async def _execute(self, held: Running) -> None:
        """A training job, start to end."""
        job = held.job
        self._log("job started", job=job.id, type=job.job_type, attempt=job.attempt)
        try:
            await self._train(held)
        except Exception as exc:  # a bug here must not kill the worker or strand the job
            log.exception("job %s crashed in the worker", job.id)
            await self._write(held, "fail", f"worker error: {type(exc).__name__}: {exc}")
        finally:
            if held.gpu is not None:
                self.free_gpus.append(held.gpu)
            self.running.pop(job.id, None)
            self.wakeup.set()

    def _timeout(self, job: Job) -> float:
        return job.timeout_seconds or self.settings.job_timeout_seconds

    async def _write(self, held: Running, outcome: str, error: str = "", **kw: Any) -> bool:
        """Finish or fail with our token; never after the store told us the job is not ours."""
        if held.stop_reason is not None:
            return False
        held.committing = True
        job_id, token = held.job.id, held.claim.token

        async def write(again: bool) -> bool:
            if outcome == "fail":
                return await self.store.fail(job_id, token, error, **kw)
            if again and await self._landed(held):
                return True
            return await self.store.finish(job_id, token, **kw)

        ok = await self._despite_outages(write, f"job {outcome}", [held])
        level = logging.INFO if held.training or not ok or error else logging.DEBUG
        self._log(f"job {outcome}", level, job=held.job.id, accepted=ok, error=error or None)
        return bool(ok)

    async def _finish_many(self, done: list[tuple[Running, dict[str, Any]]]) -> None:
        """Finish a batch of jobs in one round trip (each job still on its own token)."""
        done = [(held, result) for held, result in done if held.stop_reason is None]
        if not done:
            return
        for held, _ in done:
            held.committing = True
        helds = [held for held, _ in done]

        async def write(again: bool) -> list[bool]:
            landed = [again and await self._landed(held) for held in helds]
            todo = [
                Finish(h.job.id, h.claim.token, r)
                for (h, r), ok in zip(done, landed, strict=True)
                if not ok
            ]
            answers = iter(await self.store.finish_many(todo))
            return [ok or next(answers) for ok in landed]

        answers = await self._despite_outages(write, "job finish", helds) or [False] * len(helds)
        # One line for the batch (thousands of jobs a second), one for each job refused.
        accepted = [held.job.id for held, ok in zip(helds, answers, strict=True) if ok]
        if accepted:
            self._log("jobs finish", jobs=",".join(accepted), accepted=True)
        for held, ok in zip(helds, answers, strict=True):
            if not ok:
                self._log("job finish", job=held.job.id, accepted=False)

    async def _despite_outages(
        self, call: Callable[[bool], Awaitable[T]], what: str, helds: list[Running]
    ) -> T | None:
        """A job's last write, retried through a store outage while the lease could still be
        ours (a finished job must not turn into a failed one); None once it cannot be: the
        job is then rescued and runs again. `call(again)`: again is True on a retry, when the
        first try may have landed and only its reply was lost."""
        deadline = time.monotonic() + self.settings.lease_seconds
        again = False
        while True:
            try:
                return await call(again)
            except errors.StoreUnavailable as exc:
                again = True
                if time.monotonic() > deadline:
                    for held in helds:
                        self._log(f"{what} abandoned", job=held.job.id, error=exc.detail)
                    return None
                await asyncio.sleep(STORE_RETRY_SECONDS)

    async def _landed(self, held: Running) -> bool:
        """Whether this worker's own finish of `held` is in the store (a reply was lost)."""
        job = await self.store.get(held.job.id)
        ours = job.owner == self.worker_id and job.attempt == held.job.attempt
        return ours and job.state is State.COMPLETED

    async def _train(self, held: Running) -> None:
        job = held.job
        queue = routing.QUEUES[job.queue]
        model_type = job.model_type or ""
        model_id = artifacts.model_id_for(model_type, job.id)
        model_dir = artifacts.attempt_model_dir(self.settings.models_dir, model_id, job.attempt)
        attempt_dir = self.settings.jobs_dir / job.id / f"attempt-{job.attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        wants_gpu = queue.gpu or (queue.gpu_on_request and bool(job.payload.get("requires_gpu")))
        if wants_gpu and self.free_gpus:
            held.gpu = self.free_gpus.pop(0)
        spec = {
            "job_id": job.id,
            "attempt": job.attempt,
            "payload": job.payload,
            "runtime": self.runtime or queue.runtime,
            "model_dir": str(model_dir),
            "checkpoint_dir": str(self.settings.jobs_dir / job.id / "checkpoint"),
            "data_roots": self.data_roots,
            "device": self._device(held),
        }
        spec_path = attempt_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        log_path = attempt_dir / "log.txt"

        def on_progress(report: dict[str, Any]) -> None:
            held.progress = Progress(
                fraction=report.get("fraction"),
                metrics=report.get("metrics"),
                history=report.get("history"),
            )
            self.progress_flush.set()

        child = TrainingProcess(spec_path, log_path, on_progress, gpu=held.gpu)
        held.child = child
        await child.start()
        try:
            code = await asyncio.wait_for(child.wait(), self._timeout(job))
        except TimeoutError:
            await child.kill(self.settings.kill_grace_seconds)
            await self._write(
                held,
                "fail",
                f"job timed out after {self._timeout(job):g} seconds and was stopped",
                log=tail(log_path),
            )
            return
        if held.stop_reason is not None:
            await held.stopped.wait()
            shutil.rmtree(model_dir, ignore_errors=True)  # not ours to publish
            return
        if code == EXIT_OK:
            await self._publish(held, model_id, model_dir, attempt_dir, log_path)
            return
        error = self._child_error(attempt_dir, code)
        # A child killed by a signal (OOM killer, SIGKILL) may succeed on another try;
        # a job that failed on its own input or code will fail the same way again.
        await self._write(held, "fail", error, retry=code < 0, log=tail(log_path))
        shutil.rmtree(model_dir, ignore_errors=True)

    @staticmethod
    def _device(held: Running) -> str:
        """A GPU queue's jobs ask for CUDA (AIJOBS_ALLOW_MISSING_GPU aside, a GPU is there);
        elsewhere a job gets it with a GPU of its own."""
        return "cuda" if routing.QUEUES[held.job.queue].gpu or held.gpu is not None else "cpu"

    @staticmethod
    def _child_error(attempt_dir: Path, code: int) -> str:
        if code < 0:
            return f"training process was killed by signal {signal.Signals(-code).name}"
        try:
            message: str = json.loads((attempt_dir / "error.json").read_text())["error"]
            return message
        except (OSError, ValueError, KeyError):
            kind = "failed" if code == EXIT_JOB_FAILURE else "crashed"
            return f"training process {kind} with exit code {code}; see the job's log"

    async def _publish(
        self, held: Running, model_id: str, model_dir: Path, attempt_dir: Path, log_path: Path
    ) -> None:
        job = held.job
        if held.progress is not None:  # land the last epoch's report before the result
            leases: dict[str, tuple[str, Progress | None]] = {
                job.id: (held.claim.token, held.progress)
            }
            await self.store.renew(self.worker_id, leases, self.settings.lease_seconds)
        outcome = json.loads((attempt_dir / "result.json").read_text())
        sha256 = artifacts.checksum(model_dir)
        record = ModelRecord(
            model_id=model_id,
            framework=outcome["framework"],
            framework_version=outcome["framework_version"],
            queue=job.queue,
            model_type=job.model_type or "",
            path=str(model_dir),
            job_id=job.id,
            sha256=sha256,
            metrics=outcome["metrics"],
            created_at=now(),
        )
        artifacts.write_metadata(model_dir, {**record.model_dump(), "info": outcome["info"]})
        result = {
            "model_id": model_id,
            "model_path": str(model_dir),
            "framework": outcome["framework"],
            "framework_version": outcome["framework_version"],
            "device": self._device(held),
            "metrics": outcome["metrics"],
            **outcome["info"],
        }
        if await self._write(held, "finish", result=result, log=tail(log_path), model=record):
            # Resume state is only for a rescued run; a committed job never resumes.
            shutil.rmtree(self.settings.jobs_dir / job.id / "checkpoint", ignore_errors=True)
        else:
            shutil.rmtree(model_dir, ignore_errors=True)  # stale: another attempt owns the job

    async def _infer_batch(self, batch: list[Running]) -> None:
        """Inference jobs claimed together: sent to the inference child in one write, answered
        one after another, finished in one store round trip."""
        try:
            await self._infer(batch)
        except Exception as exc:  # a bug here must not kill the worker or strand the jobs
            log.exception("inference batch crashed in the worker")
            for held in batch:
                if not held.committing:
                    await self._write(held, "fail", f"worker error: {type(exc).__name__}: {exc}")
        finally:
            for held in batch:
                self.running.pop(held.job.id, None)
            self.wakeup.set()

    async def _infer(self, batch: list[Running]) -> None:
        ready: list[tuple[Running, ModelRecord]] = []
        for held in batch:
            job = held.job
            self._log("job started", logging.DEBUG, job=job.id, type=job.job_type)
            try:
                ready.append((held, await self._model(job.model_id or "")))
            except Exception as exc:
                await self._write(held, "fail", f"model {job.model_id} is not available: {exc}")
        while ready:
            ready = await self._infer_round(ready)

    async def _infer_round(
        self, ready: list[tuple[Running, ModelRecord]]
    ) -> list[tuple[Running, ModelRecord]]:
        """Send the batch to the child, write what it answered; return the jobs to send again:
        those queued behind a job that crashed the child or was killed for its time limit.
        They never started, so they run again on the new child, with no attempt used up."""
        replies = await self.inference.send([self._request(h.job, m) for h, m in ready])
        late = await self._await_replies(replies, [self._timeout(h.job) for h, _ in ready])
        done: list[tuple[Running, dict[str, Any]]] = []
        again: list[tuple[Running, ModelRecord]] = []
        for (held, model), reply in zip(ready, replies, strict=True):
            if held.stop_reason is not None:
                continue  # cancelled or lost: nothing of it is ours to write
            if reply in late:
                await self._write(
                    held, "fail", f"inference timed out after {self._timeout(held.job):g}s"
                )
            elif isinstance(error := reply.exception(), NotRun):
                again.append((held, model))
            elif error is not None:
                await self._write(held, "fail", f"inference process died: {error}", retry=True)
            elif not (answer := reply.result()).get("ok"):
                await self._write(held, "fail", str(answer.get("error")))
            else:
                result = {
                    "model_id": model.model_id,
                    "framework": model.framework,
                    **answer["output"],
                    "inference_time_ms": answer["elapsed_ms"],
                }
                done.append((held, result))
        await self._finish_many(done)
        return again

    async def _await_replies(
        self, replies: list[asyncio.Future[dict[str, Any]]], limits: list[float]
    ) -> set[asyncio.Future[dict[str, Any]]]:
        """Wait for the child's answers, each within its job's time limit from now; return the
        late ones. When the limit runs out on the job the child is working on, the child is
        killed (the jobs behind it then run again); a job whose limit runs out while it waits
        behind a slower one is late, but the child goes on."""
        loop = asyncio.get_running_loop()
        due = {reply: loop.time() + limit for reply, limit in zip(replies, limits, strict=True)}
        late: set[asyncio.Future[dict[str, Any]]] = set()
        while waiting := [r for r in replies if not r.done() and r not in late]:
            await asyncio.wait(
                waiting, timeout=max(0.0, min(due[r] for r in waiting) - loop.time())
            )
            now = loop.time()
            late |= {r for r in waiting if not r.done() and due[r] <= now}
            if self.inference.working_on() in late:
                await self.inference.kill()
                await asyncio.wait(replies, timeout=10)  # failed at its end: NotRun behind it
                break
        return late

    def _request(self, job: Job, model: ModelRecord) -> dict[str, Any]:
        return {
            "runtime": self.runtime or routing.QUEUES[model.queue].runtime,
            "model_dir": model.path,
            "sha256": model.sha256,
            "input_data": job.payload["input_data"],
            "parameters": job.payload.get("parameters") or {},
            "data_roots": self.data_roots,
        }

    async def _model(self, model_id: str) -> ModelRecord:
        """A model's record; asked of the store once, however many of its jobs start at once."""
        lookup = self.models.get(model_id)
        if lookup is not None and lookup.done() and lookup.exception() is None:
            return lookup.result()
        if lookup is None:
            lookup = self.models[model_id] = asyncio.ensure_future(self.store.get_model(model_id))
            while len(self.models) > MODELS_REMEMBERED:
                del self.models[next(iter(self.models))]
        try:
            return await asyncio.shield(lookup)
        except Exception:
            if self.models.get(model_id) is lookup:
                del self.models[model_id]  # not found, or the store was down: ask again next time
            raise

    def _log(self, event: str, level: int = logging.INFO, **fields: Any) -> None:
        if log.isEnabledFor(level):
            parts = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            log.log(level, "%s worker=%s %s", event, self.worker_id, parts)
