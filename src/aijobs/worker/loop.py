"""The worker: claims jobs for its queues, runs each in a child, keeps its leases, obeys cancels.

The store does every state change (and rescue); this process only ever writes with the fencing
token of its own claim, so a job it lost can never be changed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Awaitable

from aijobs import routing
from aijobs.jobs import Claim, Renewal, Waiter, WorkerInfo, now
from aijobs.settings import Settings
from aijobs.store import JobStore
from aijobs.worker.commits import STORE_RETRY_SECONDS, Commits
from aijobs.worker.inference import Inference, InferenceChild
from aijobs.worker.logs import LOG_CHECK_SECONDS
from aijobs.worker.preflight import gpu_devices
from aijobs.worker.running import Clock, EventLog, Running, StopReason, log
from aijobs.worker.supervisor import InferenceProcess, TrainingProcess
from aijobs.worker.training import SpawnChild, Training

IDLE_WAIT = 1.0  # longest sleep between claims when the store sends no wake-up


class Worker:
    """One worker process: its claim loop, the watcher that hears of new work, its leases, and
    the training and inference parts that run what it claims. `clock`, `spawn_training` and
    `inference_child` stand in for time and for the child processes in tests."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        queues: list[str],
        concurrency: int = 1,
        runtime: str | None = None,
        *,
        clock: Clock | None = None,
        spawn_training: SpawnChild = TrainingProcess,
        inference_child: InferenceChild | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queues = queues
        self.concurrency = concurrency
        # One training job per GPU: each gets its own device through CUDA_VISIBLE_DEVICES.
        served = [routing.QUEUES[q] for q in queues]
        free_gpus = gpu_devices() if any(q.gpu or q.gpu_on_request for q in served) else []
        if free_gpus and any(q.gpu for q in served) and concurrency > len(free_gpus):
            log.warning("concurrency %d capped at %d GPUs", concurrency, len(free_gpus))
            self.concurrency = len(free_gpus)
        self.gpus = list(free_gpus)  # what its heartbeat tells: free_gpus is handed out
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[str, Running] = {}
        self.stopping = asyncio.Event()
        self.progress_flush = asyncio.Event()
        self.wakeup = asyncio.Event()  # claim again: a slot freed, the store hinted, or stop
        self.watching = asyncio.Event()  # the claim loop wants to hear of new work
        self.store_woke = False  # the store's hint came in: claim, to pass it on if not to use it
        self.claim_now = True  # at start, and after a full claim: there may be more
        self.started_at = now()
        self.clock = clock or Clock()
        self._log = EventLog(self.worker_id)
        self.inference_child = inference_child or InferenceProcess(
            settings.jobs_dir / f"inference-{self.worker_id.replace(':', '_')}.log",
            settings.inference_cache_size,
        )
        self.renew_interval = settings.lease_seconds / 3
        self._stoppers: set[asyncio.Task[None]] = set()
        # Inference jobs are short: hold a few more than the training slots, so the inference
        # child always has the next one, and claim and finish them in batches.
        self.capacity = self.concurrency + settings.inference_prefetch
        self.commits = Commits(settings, store, self.worker_id, self.clock, self._log)
        self.training = Training(
            settings,
            self.commits,
            self._log,
            free_gpus,
            on_progress=self.progress_flush.set,
            runtime=runtime,
            spawn=spawn_training,
        )
        self.frameworks = self.training.runtimes.versions(queues)
        self.inference = Inference(
            settings,
            store,
            self.commits,
            self._log,
            self.inference_child,
            runtime=runtime,
            on_start=self.progress_flush.set,
        )

    @property
    def free_gpus(self) -> list[str]:
        """The GPUs no training job holds now."""
        return self.training.free_gpus

    # -- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> None:
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        await self.store.register_worker(self._info())
        # Started now, so the first inference does not pay for a process start.
        await self.inference_child.start()
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
            await self.inference_child.kill()
            with contextlib.suppress(Exception):
                await self.store.unregister_worker(self.worker_id)
            self._log("worker stopped")

    def _info(self) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            model_types=self.training.runtimes.declared(self.queues),
            gpus=self.gpus,
            frameworks=self.frameworks,
            concurrency=self.concurrency,
            running=len(self.running),
            running_jobs=sorted(self.running),
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
        while not self.stopping.is_set():
            if await self.tick():
                continue  # there may be more: claim again; else the queue is empty for now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * IDLE_WAIT):
                    await self.wakeup.wait()
            self.wakeup.clear()

    async def tick(self) -> bool:
        """One step of the claim loop: claim what the free slots allow (or pass the store's
        hint on), start it, and say whether to watch the queues; True when the claim filled
        every slot, so there may be more to claim at once."""
        room = self.capacity - len(self.running)
        free_training = self._free_training()
        claims: list[Claim] = []
        # Claim in batches: not again for each job that ends while most are still held, nor
        # while a batch of inference jobs is with the child: the jobs that arrive meanwhile are
        # its next batch, claimed together when it ends. (A batch per arrival costs a claim, a
        # finish and a child round trip per job: the CPU the submitting side needs.)
        inference_busy = any(not held.training for held in self.running.values())
        wants = room > 0 and not inference_busy and (room * 2 >= self.capacity or not self.running)
        # Otherwise claim only on the store's hint: while the loop wants work, the watcher
        # hears of every arrival, so a freed slot alone is no reason to ask.
        store_woke, self.store_woke = self.store_woke, False
        if (wants and self.claim_now) or store_woke:  # limit 0: takes nothing, passes the hint on
            try:
                claims = await self.store.claim(
                    self.queues,
                    self.worker_id,
                    self.settings.lease_seconds,
                    0 if inference_busy else max(0, room),
                    max_training=max(0, free_training),
                )
            except Exception as exc:  # store down: back off, keep running jobs going
                self._log("claim failed", error=repr(exc))
                await self.clock.sleep(STORE_RETRY_SECONDS)
        self._start(claims)
        self.claim_now = bool(claims) and len(claims) == room
        if self.claim_now:
            return True
        # Watch the queues only when work would be claimed (taking a hint and not claiming
        # would starve another idle worker of it); with full training slots, for inference
        # jobs only (the watcher says so to the store).
        if wants:
            self.watching.set()
        else:
            self.watching.clear()
        return False

    def _free_training(self) -> int:
        return self.concurrency - sum(h.training for h in self.running.values())

    def _start(self, claims: list[Claim]) -> None:
        inference: list[Running] = []
        for claim in claims:
            held = Running(claim)
            self.running[claim.job.id] = held
            if held.training:
                held.task = asyncio.create_task(self._release(self.training.run(held), [held]))
            else:
                inference.append(held)
        if inference:  # one task for the batch: its requests go to the child together
            task = asyncio.create_task(self._release(self.inference.run(inference), inference))
            for held in inference:
                held.task = task

    async def _release(self, work: Awaitable[None], helds: list[Running]) -> None:
        """Run jobs to their end, then free their slots and claim again."""
        try:
            await work
        finally:
            for held in helds:
                self.running.pop(held.job.id, None)
            self.wakeup.set()

    async def _watch(self) -> None:
        """Wait on the store for new work while the claim loop wants it. One task for the
        worker's life: a blocking store call is never cancelled midway (on Redis that would
        cost the connection), it just ends within IDLE_WAIT."""
        while True:
            await self.watching.wait()
            free_training = self._free_training()
            room = self.capacity - len(self.running)  # the store takes at least one
            waiter = Waiter(
                self.worker_id, self.settings.lease_seconds, max(0, free_training), room
            )
            handed: list[Claim] = []
            try:
                handed = await self.store.wait_for_work(self.queues, IDLE_WAIT, waiter)
            except Exception:  # store down: back off; the claim loop reports it
                await asyncio.sleep(IDLE_WAIT)
            self.watching.clear()  # the claim loop says when to wait again
            if handed:  # claimed for us (submitted meanwhile, or ready): start it
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
                held.stop_reason = StopReason.DRAINING  # we write the hand-back ourselves below
                await self._stop_child(held)
                # Stopped for the worker's sake, not the job's: the run is not counted.
                ok = await self.store.fail(
                    held.job.id,
                    held.claim.token,
                    "worker shut down; job handed back",
                    retry=True,
                    count_attempt=False,
                )
                self._log("handed back", job=held.job.id, accepted=ok)
        if late:
            await asyncio.wait(late, timeout=10)

    # -- leases --------------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        last_ok = self.clock.monotonic()
        last_rescue = 0.0
        # Past this long without a renewal our leases may run out before the next one lands.
        fence_after = self.settings.lease_seconds - 2 * self.renew_interval
        # A renewal may take one renew interval to answer; past that, the interval left before
        # the lease ends (less what our last renewal took to reach us) is the time to stop.
        hang_after = self.settings.lease_seconds - self.renew_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._until_report(), self.renew_interval)
                await asyncio.sleep(0.2)  # coalesce bursts of progress reports
            self.progress_flush.clear()
            rescue = self.clock.monotonic() - last_rescue > self.renew_interval
            renewal = asyncio.ensure_future(self._lease_round(rescue))
            left = last_ok + hang_after - self.clock.monotonic()
            answered, _ = await asyncio.wait({renewal}, timeout=max(0.0, left))
            if not answered and self.running:
                # The store does not answer in time (a write lock held past the lease, a
                # partition slower than the socket timeout): the call is left to end by itself,
                # but our jobs are stopped now, before another worker can rerun them.
                self._log("lease renewal hangs", seconds=round(hang_after, 3))
                self._fence()
            try:
                await renewal
                last_ok = self.clock.monotonic()
                last_rescue = last_ok if rescue else last_rescue
            except Exception as exc:
                self._log("lease renewal failed", error=repr(exc))
                if self.clock.monotonic() - last_ok > fence_after:
                    self._fence()

    async def _until_report(self) -> None:
        """Until a progress report comes in or a job's log grows: the next renewal sends it."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress_flush.wait(), LOG_CHECK_SECONDS)
                return
            if any(h.log is not None and h.log.grew() for h in self.running.values()):
                return

    async def _lease_round(self, rescue: bool) -> None:
        await self._renew_all()
        await self.store.register_worker(self._info())
        if rescue:
            for job_id, state in await self.store.rescue_expired():
                self._log("rescued expired lease", job=job_id, state=state)

    def _fence(self) -> None:
        """Self-fence: our leases may be gone; stop before another worker reruns the jobs."""
        for held in list(self.running.values()):
            self._stop(held, StopReason.LOST)

    async def _renew_all(self) -> None:
        if not self.running:
            return
        leases = {
            jid: (h.claim.token, h.report()) for jid, h in self.running.items() if not h.committing
        }
        if not leases:
            return
        for held in self.running.values():
            held.progress = None
        answers = await self.store.renew(self.worker_id, leases, self.settings.lease_seconds)
        for job_id, answer in answers.items():
            held_or_none = self.running.get(job_id)
            if held_or_none is None:
                continue
            if answer is Renewal.OK:
                held_or_none.reported(leases[job_id][1])
            else:
                self._stop(held_or_none, StopReason.of(answer))

    def _stop(self, held: Running, reason: StopReason) -> None:
        if held.stop_reason is None:
            held.stop_reason = reason
            self._log("stopping job", job=held.job.id, reason=reason)
            self._stoppers.add(task := asyncio.create_task(self._stop_child(held)))
            task.add_done_callback(self._stoppers.discard)

    async def _stop_child(self, held: Running) -> None:
        if held.child is not None:
            await held.child.kill(self.settings.kill_grace_seconds)
        elif not held.training:
            await self.inference.stop(held)
        held.stopped.set()
