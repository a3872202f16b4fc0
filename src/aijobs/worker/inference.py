"""Inference jobs: claimed in batches, sent to the long-lived inference child together,
answered one after another, finished in one store round trip."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aijobs import routing
from aijobs.jobs import Job, ModelRecord
from aijobs.runtimes.choice import RuntimeChoice
from aijobs.settings import Settings
from aijobs.store import JobStore
from aijobs.store.stats import FailureReason
from aijobs.worker.commits import Commits
from aijobs.worker.protocol import InferenceReply, InferenceRequest
from aijobs.worker.running import EventLog, Running, log, time_limit
from aijobs.worker.supervisor import NotRun, UnreadableReply

MODELS_REMEMBERED = 256  # model records kept by the worker (they never change once stored)


class InferenceChild(Protocol):
    """The inference child (supervisor.InferenceProcess; a fake one in tests)."""

    async def start(self) -> None: ...

    async def send(
        self, requests: list[InferenceRequest]
    ) -> list[asyncio.Future[InferenceReply]]: ...

    def skip(self, reply: asyncio.Future[InferenceReply]) -> None: ...

    def working_on(self) -> asyncio.Future[InferenceReply] | None: ...

    async def kill(self, grace: float = 1.0) -> None: ...


class Inference:
    """Runs the worker's inference jobs on its inference child."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        commits: Commits,
        log: EventLog,
        child: InferenceChild,
        runtime: str | None = None,
        on_start: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.commits = commits
        self.log = log
        self.child = child
        self.runtimes = RuntimeChoice(runtime)  # with one: it serves every queue
        self.on_start = on_start  # a queued job began: tell the store with the next renewal
        self.data_roots = [str(r) for r in settings.roots]
        self.models: dict[str, asyncio.Future[ModelRecord]] = {}
        self.sent: dict[str, asyncio.Future[InferenceReply]] = {}  # job id -> its reply, awaited

    async def stop(self, held: Running) -> None:
        """Stop a held job (cancelled, or its lease lost): kill the child only when it is this
        job the child runs; one still queued in the child is skipped, one not sent is not sent.
        Its outcome is never written (its stop_reason is set)."""
        reply = self.sent.get(held.job.id)
        if reply is None or reply.done():
            return
        if reply is self.child.working_on():
            await self.child.kill()  # the jobs queued behind it run again on a new child
        else:
            self.child.skip(reply)

    async def run(self, batch: list[Running]) -> None:
        """Inference jobs claimed together: sent to the inference child in one write, answered
        one after another, finished in one store round trip."""
        try:
            await self._infer(batch)
        except Exception as exc:  # a bug here must not kill the worker or strand the jobs
            log.exception("inference batch crashed in the worker")
            for held in batch:
                if not held.committing:
                    error = f"worker error: {type(exc).__name__}: {exc}"
                    await self.commits.write(held, "fail", error, reason=FailureReason.CRASHED)

    async def _infer(self, batch: list[Running]) -> None:
        ready: list[tuple[Running, ModelRecord]] = []
        for held in batch:
            job = held.job
            self.log("job started", logging.DEBUG, job=job.id, type=job.job_type)
            model_id = job.model_id or ""

            async def lookup(_: bool, model_id: str = model_id) -> ModelRecord:
                return await self._model(model_id)

            try:
                model = await self.commits.despite_outages(lookup, "model lookup", [held])
            except Exception as exc:
                error = f"model {job.model_id} is not available: {exc}"
                await self.commits.write(held, "fail", error)
                continue
            if model is not None:  # else the store stayed down: the job is left to the rescue
                ready.append((held, model))
        while ready:
            ready = await self._infer_round(ready)

    async def _infer_round(
        self, ready: list[tuple[Running, ModelRecord]]
    ) -> list[tuple[Running, ModelRecord]]:
        """Send the batch to the child, write what it answered; return the jobs to send again:
        those queued behind a job that crashed the child or was killed for its time limit.
        They never started, so they run again on the new child, with no attempt used up."""
        ready = [(held, model) for held, model in ready if held.stop_reason is None]
        replies = await self.child.send([self._request(h.job, m) for h, m in ready])
        self.sent |= {held.job.id: reply for (held, _), reply in zip(ready, replies, strict=True)}
        limits = [time_limit(h.job, self.settings) for h, _ in ready]
        held_of = {reply: held for (held, _), reply in zip(ready, replies, strict=True)}
        try:
            late = await self._await_replies(replies, limits, lambda r: self._started(held_of[r]))
        finally:
            for held, _ in ready:
                self.sent.pop(held.job.id, None)
        done: list[tuple[Running, dict[str, Any]]] = []
        again: list[tuple[Running, ModelRecord]] = []
        for (held, model), reply, limit in zip(ready, replies, limits, strict=True):
            if held.stop_reason is not None:
                continue  # cancelled or lost: nothing of it is ours to write
            if reply in late:
                await self._fail(
                    held, f"inference timed out after {limit:g}s", FailureReason.TIMEOUT
                )
            elif isinstance(error := reply.exception(), NotRun):
                again.append((held, model))
            elif isinstance(error, UnreadableReply):  # it would be the same the next time
                await self._fail(held, str(error))
            elif error is not None:
                died = f"inference process died: {error}"
                await self._fail(held, died, FailureReason.CRASHED, retry=True)
            elif not (answer := reply.result()).ok:
                await self._fail(held, str(answer.error))
            else:
                result = {
                    "model_id": model.model_id,
                    "framework": model.framework,
                    **answer.output,
                    "inference_time_ms": answer.elapsed_ms,
                }
                done.append((held, result))
        await self._finish(done)
        return again

    async def _fail(
        self,
        held: Running,
        error: str,
        reason: FailureReason = FailureReason.ERROR,
        retry: bool = False,
    ) -> None:
        """Fail one job of a batch: whatever its write meets, the others' writes go on."""
        try:
            await self.commits.write(held, "fail", error, retry=retry, reason=reason)
        except Exception:
            log.exception("failing job %s crashed in the worker", held.job.id)
            held.committing = False  # renewed until the batch ends, then rescued at lease expiry

    async def _finish(self, done: list[tuple[Running, dict[str, Any]]]) -> None:
        """Finish the batch's answered jobs in one round trip; should that write fail for any
        reason but an outage, each job is written on its own, so one bad result fails alone."""
        try:
            await self.commits.finish_many(done)
        except Exception:
            log.exception("finishing %d jobs at once crashed; finishing each alone", len(done))
            for held, result in done:
                held.committing = False
                try:
                    await self.commits.write(held, "finish", result=result)
                except Exception as exc:
                    held.committing = False
                    await self._fail(held, f"the result could not be stored: {exc!r}")

    def _started(self, held: Running) -> None:
        held.unreported_start = True
        self.on_start()

    async def _await_replies(
        self,
        replies: list[asyncio.Future[InferenceReply]],
        limits: list[float],
        started: Callable[[asyncio.Future[InferenceReply]], None],
    ) -> set[asyncio.Future[InferenceReply]]:
        """Wait for the child's answers; return the late one, if any. A job's time limit runs
        from the moment the child starts it (it answers in order: when the answer before came),
        so a job queued behind slower ones is never failed for a run it did not have. When the
        limit of the job the child runs is out, the child is killed (the jobs behind it then
        run again). `started` hears of each job as the child starts it."""
        loop = asyncio.get_running_loop()
        limit_of = dict(zip(replies, limits, strict=True))
        due: dict[asyncio.Future[InferenceReply], float] = {}
        while waiting := [r for r in replies if not r.done()]:
            working = self.child.working_on()
            if working in limit_of and working not in due:
                due[working] = loop.time() + limit_of[working]
                started(working)
            elif working is not None and working not in limit_of:
                waiting.append(working)  # another batch's job: ours start when it ends
            timeout = max(0.0, due[working] - loop.time()) if working in due else None
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if working in due and not working.done() and due[working] <= loop.time():
                await self.child.kill()
                await asyncio.wait(replies, timeout=10)  # failed at its end: NotRun behind it
                return {working}
        return set()

    def _request(self, job: Job, model: ModelRecord) -> InferenceRequest:
        return InferenceRequest(
            # The runtime that trained it: a plugin's own model type may share a queue.
            runtime=self.runtimes.runtime_for(model.queue, model.model_type)
            or routing.QUEUES[model.queue].runtime,
            model_dir=model.path,
            sha256=model.sha256,
            input_data=job.payload["input_data"],
            parameters=job.payload.get("parameters") or {},
            data_roots=self.data_roots,
        )

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
