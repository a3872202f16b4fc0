"""The chaos oracle for either store: every non-terminal job is in exactly the index its state
names, and no index is orphaned (Redis: aijobs.store.redis.check; SQLite: the same rules in SQL);
and the metrics counted every job that came and went (counted_problems)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aijobs.store.sqlite.schema import SHOWN_STATE
from aijobs.store.stats import JobStats
from tests.integration.harness import TERMINAL, System

FINISHED_ONE = re.compile(r"job finish worker=\S+ job=(\S+) accepted=True")
FINISHED_BATCH = re.compile(r"jobs finish worker=\S+ jobs=(\S+) accepted=True")


def logged_commits(system: System, completed: Iterable[str], timeout: float = 15) -> Counter[str]:
    """accepted_commits of the workers' log, once it names each job of `completed`: a worker
    logs its commit after the store took it, so a client may see the job completed first."""
    completed = set(completed)

    def read() -> Counter[str]:
        log = system.home / "worker.log"
        return accepted_commits(log.read_text(errors="replace") if log.exists() else "")

    deadline = time.monotonic() + timeout
    while not completed <= set(found := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def accepted_commits(worker_log: str) -> Counter[str]:
    """Accepted result commits per job in a worker's log (finish accepted=True): one line per
    training job, one per batch of inference jobs. A job whose result landed twice counts 2."""
    found = Counter(FINISHED_ONE.findall(worker_log))
    for batch in FINISHED_BATCH.findall(worker_log):
        found.update(batch.split(","))
    return found


def redis_problems(url: str, prefix: str) -> list[str]:
    from aijobs.store.redis import RedisStore
    from aijobs.store.redis.check import check_invariants

    async def main() -> list[str]:
        store = RedisStore(url, prefix=prefix)
        await store.open()
        try:
            counted = counted_problems(await store.job_stats(), await store.queue_depths())
            return await check_invariants(store) + counted
        finally:
            await store.close()

    return asyncio.run(main())


def sqlite_problems(path: Path) -> list[str]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        problems = [
            f"{job_id}: {state} with token={token!r} lease_until={lease}"
            for job_id, state, token, lease in db.execute(
                "SELECT id, state, token, lease_until FROM jobs WHERE "
                "(state = 'running' AND (token IS NULL OR lease_until IS NULL OR owner IS NULL))"
                " OR (state = 'pending' AND (token IS NOT NULL OR lease_until IS NOT NULL))"
                " OR (state IN ('completed', 'failed', 'cancelled') AND lease_until IS NOT NULL)"
            )
        ]
        actual = dict(
            ((q, s), n)
            for q, s, n in db.execute(
                f"SELECT queue, {SHOWN_STATE}, count(*) FROM jobs GROUP BY 1, 2"
            )
        )
        counted = {(q, s): n for q, s, n in db.execute("SELECT queue, state, n FROM counts")}
        for key in set(actual) | set(counted):
            if actual.get(key, 0) != counted.get(key, 0):
                problems.append(f"counts{key} = {counted.get(key, 0)}, jobs: {actual.get(key, 0)}")
        depths: dict[str, dict[str, int]] = {}
        for (queue, state), n in actual.items():
            depths.setdefault(queue, {})[state] = n
        rows = db.execute("SELECT metric, job_type, queue, label, value FROM job_stats")
        return problems + counted_problems(JobStats.from_rows(rows), depths)
    finally:
        db.close()


def counted_problems(stats: JobStats, depths: dict[str, dict[str, int]]) -> list[str]:
    """Every job submitted and not finished yet is pending or running: the metrics counted each
    job's submission and its end exactly once, whatever killed what (retention forgets only
    finished jobs)."""
    problems = []
    submitted: Counter[str] = Counter()
    for (_, queue), n in stats.submitted.items():
        submitted[queue] += n
    for (_, queue, _), n in stats.finished.items():
        submitted[queue] -= n
    for queue in set(submitted) | set(depths):
        active = depths.get(queue, {}).get("pending", 0) + depths.get(queue, {}).get("running", 0)
        if submitted[queue] != active:
            problems.append(
                f"metrics of {queue}: {submitted[queue]} submitted, not finished; {active} active"
            )
    return problems


def assert_each_ended_once(
    system: System, jobs: Iterable[str], *, all_jobs: bool = True
) -> dict[str, dict[str, Any]]:
    """Every job in `jobs` ended exactly once: a terminal state, its result committed once if
    it completed and never if it did not; with `all_jobs`, the store holds these jobs and no
    other. Returns each job's final status."""
    jobs = set(jobs)
    finals = {job: system.status(job) for job in jobs}
    commits = logged_commits(system, [j for j, f in finals.items() if f["status"] == "completed"])
    for job, final in finals.items():
        assert final["status"] in TERMINAL, final
        assert commits[job] == (final["status"] == "completed"), (job, commits[job], final)
    if all_jobs:
        body = system.get("/jobs", params={"limit": 1000}).json()
        listed = [j["job_id"] for j in body["jobs"]]
        assert len(listed) == body["total"] == len(set(listed))
        assert set(listed) == jobs
    return finals
