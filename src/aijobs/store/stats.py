"""What every store counts for GET /metrics, and where a pending job stands in its queue.

The figures live in the store, not in a process's memory, so that every API process answers the
same totals however many API processes and workers share the store. Each store keeps them as
rows (metric, job type, queue, label) -> integer, changed in the very step that changes the
job (SQLite: triggers on the jobs table; Redis: the Lua scripts), and reads them back here:

* ``submitted``  (job type, queue): every job stored by a submission
* ``finished``   (job type, queue, status): every job that became completed, failed or cancelled
* ``failure``    (queue, reason): every failed attempt, retried or not (FailureReason)
* ``wait``       (queue): a histogram of the time from submission to a job's first start
* ``run``        (job type, queue): a histogram of the time from a job's (last) start to its end,
  for every job that ends having started

A histogram is one row per bucket (its index in BUCKET_BOUNDS_MS as the label, the last one
for +Inf) and a ``sum`` row: milliseconds, exact integers in both stores.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class FailureReason(StrEnum):
    """Why an attempt failed: a label of aijobs_job_failures_total."""

    TIMEOUT = "timeout"  # it ran past its time limit and was stopped
    CRASHED = "crashed"  # its child process died (a signal, an unexpected exit, the worker)
    ERROR = "error"  # the job itself raised: bad data, bad hyperparameters, its own code
    LOST = "lost"  # its lease expired and rescue_expired took it back
    CANCELLED = "cancelled"  # cancelled while a worker held it


# The upper bounds (ms) of the wait and run histograms' buckets; one more bucket is +Inf.
# From a fraction of a second (inference) to a day (training).
BUCKET_BOUNDS_MS: tuple[int, ...] = (
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    1_800_000,
    3_600_000,
    7_200_000,
    21_600_000,
    86_400_000,
)
SUM_LABEL = "sum"  # a histogram's row of the sum of its observations (ms)


def bucket_of(ms: int) -> int:
    """The index of the bucket an observation of `ms` milliseconds falls in."""
    for i, bound in enumerate(BUCKET_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(BUCKET_BOUNDS_MS)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKET_BOUNDS_MS) + 1))
    sum_ms: int = 0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound in seconds, observations up to it), +Inf last: Prometheus' buckets."""
        bounds = [f"{b / 1000:g}" for b in BUCKET_BOUNDS_MS] + ["+Inf"]
        out, running = [], 0
        for bound, n in zip(bounds, self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass
class JobStats:
    submitted: dict[tuple[str, str], int] = field(default_factory=dict)  # job type, queue
    finished: dict[tuple[str, str, str], int] = field(default_factory=dict)  # + status
    failures: dict[tuple[str, str], int] = field(default_factory=dict)  # queue, reason
    wait: dict[str, Histogram] = field(default_factory=dict)  # queue
    run: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # job type, queue

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str, str, int]]) -> JobStats:
        """From a store's rows: (metric, job type, queue, label, value)."""
        stats = cls()
        for metric, job_type, queue, label, value in rows:
            n = int(value)
            if metric == "submitted":
                stats.submitted[job_type, queue] = n
            elif metric == "finished":
                stats.finished[job_type, queue, label] = n
            elif metric == "failure":
                stats.failures[queue, label] = n
            elif metric in ("wait", "run"):
                hist = (
                    stats.wait.setdefault(queue, Histogram())
                    if metric == "wait"
                    else stats.run.setdefault((job_type, queue), Histogram())
                )
                if label == SUM_LABEL:
                    hist.sum_ms = n
                elif label.isdigit() and int(label) < len(hist.counts):
                    hist.counts[int(label)] = n
        return stats


@dataclass(frozen=True)
class QueuePosition:
    """Where a job that shows pending stands (JobStore.queue_position)."""

    jobs_ahead: int = 0  # claimable jobs of its queue a claim takes before it
    backing_off_ahead: int = 0  # retried jobs ranked before it, waiting out their back-off
    retry_in: float | None = None  # it waits out its own back-off for this many seconds more
    claimed_by: str | None = None  # a worker holds it, not started yet (queued in the worker)
