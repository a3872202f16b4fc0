"""GET /metrics: the Prometheus text exposition of the store's figures.

Every figure comes from the store (JobStore.job_stats, queue_depths, live_workers), so every
API process answers the same totals however many processes and workers share the store. The
exposition is built per request from a collector over that snapshot, in a registry of its own:
nothing is kept in a process between two scrapes.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from aijobs import errors, routing
from aijobs.api.auth import caller, request_credential
from aijobs.api.deps import SettingsDep, StoreDep
from aijobs.api.errors import error_responses
from aijobs.jobs import WorkerInfo
from aijobs.settings import Settings
from aijobs.store.stats import FailureReason, JobStats

router = APIRouter(tags=["monitoring"])


@dataclass(frozen=True)
class Snapshot:
    stats: JobStats
    depths: dict[str, dict[str, int]]
    workers: list[WorkerInfo]
    oldest_waiting: dict[str, float]  # queue -> when its claimable job waiting longest came
    taken_at: float


class StoreCollector(Collector):
    """The metric families of one snapshot of the store (docs/monitoring.md)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats, depths, workers = self.snapshot.stats, self.snapshot.depths, self.snapshot.workers
        # Every queue of the catalogue, and any other one a figure names, shows its zeros too:
        # a graph of a queue that emptied falls to 0 rather than stopping.
        queues = sorted(
            set(routing.QUEUES)
            | set(depths)
            | {q for w in workers for q in w.queues}
            | {q for _, q in stats.submitted}
        )
        submitted = CounterMetricFamily(
            "aijobs_jobs_submitted", "Jobs stored by a submission.", labels=["job_type", "queue"]
        )
        for (job_type, queue), n in sorted(stats.submitted.items()):
            submitted.add_metric([job_type, queue], n)
        yield submitted
        finished = CounterMetricFamily(
            "aijobs_jobs_finished",
            "Jobs that ended: completed, failed (attempts spent) or cancelled.",
            labels=["job_type", "queue", "status"],
        )
        for (job_type, queue, status), n in sorted(stats.finished.items()):
            finished.add_metric([job_type, queue, status], n)
        yield finished
        failures = CounterMetricFamily(
            "aijobs_job_failures",
            "Failed attempts, retried or not, by reason.",
            labels=["queue", "reason"],
        )
        for queue in sorted(set(queues) | {q for q, _ in stats.failures}):
            for reason in FailureReason:
                failures.add_metric([queue, reason.value], stats.failures.get((queue, reason), 0))
        yield failures
        wait = HistogramMetricFamily(
            "aijobs_job_wait_seconds",
            "Time from a job's submission to its first start.",
            labels=["queue"],
        )
        for queue, hist in sorted(stats.wait.items()):
            wait.add_metric([queue], hist.cumulative(), sum_value=hist.sum_ms / 1000)
        yield wait
        run = HistogramMetricFamily(
            "aijobs_job_run_seconds",
            "Time from a job's start to its end (completed, failed or cancelled while running).",
            labels=["job_type", "queue"],
        )
        for (job_type, queue), hist in sorted(stats.run.items()):
            run.add_metric([job_type, queue], hist.cumulative(), sum_value=hist.sum_ms / 1000)
        yield run
        yield from self._gauges(queues)

    def _gauges(self, queues: list[str]) -> Iterator[Metric]:
        depths, workers = self.snapshot.depths, self.snapshot.workers
        lengths = GaugeMetricFamily(
            "aijobs_queue_jobs",
            "Jobs in a queue, by the state they show.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "aijobs_queue_oldest_waiting_seconds",
            "How long the claimable job of a queue waiting longest has waited (0: none waits).",
            labels=["queue"],
        )
        live = GaugeMetricFamily(
            "aijobs_workers", "Live workers serving a queue.", labels=["queue"]
        )
        slots = GaugeMetricFamily(
            "aijobs_worker_slots",
            "Job slots of the live workers serving a queue (a worker on several queues counts "
            "in each).",
            labels=["queue", "state"],
        )
        for queue in queues:
            depth = depths.get(queue, {})
            for state in ("pending", "running"):
                lengths.add_metric([queue, state], depth.get(state, 0))
            since = self.snapshot.oldest_waiting.get(queue)
            waited = 0.0 if since is None else max(0.0, self.snapshot.taken_at - since)
            oldest.add_metric([queue], waited)
            serving = [w for w in workers if queue in w.queues]
            busy = sum(min(w.running, w.concurrency) for w in serving)
            total = sum(w.concurrency for w in serving)
            live.add_metric([queue], len(serving))
            slots.add_metric([queue, "busy"], busy)
            slots.add_metric([queue, "idle"], max(0, total - busy))
        yield lengths
        yield oldest
        yield live
        yield slots


async def authorize(request: Request, settings: Settings) -> None:
    """Open with auth off; with it on, the metrics token (AIJOBS_METRICS_TOKEN) or an admin."""
    if not settings.auth_required:
        return
    token, given = settings.metrics_token, request_credential(request)
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return
    if not (await caller(request)).admin:
        raise errors.Forbidden("GET /metrics needs an admin's credentials or the metrics token")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **error_responses(401, 403, 503),
    },
    summary="Prometheus metrics of the whole deployment",
)
async def metrics(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    await authorize(request, settings)
    stats, depths, workers, oldest = await asyncio.gather(
        store.job_stats(),
        store.queue_depths(),
        store.live_workers(settings.worker_ttl_seconds),
        store.oldest_waiting(list(routing.QUEUES)),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(Snapshot(stats, depths, workers, oldest, time.time())))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
