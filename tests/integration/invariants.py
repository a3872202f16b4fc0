"""The chaos oracle for either store: every non-terminal job is in exactly the index its state
names, and no index is orphaned (Redis: aijobs.store.redis.check; SQLite: the same rules in SQL)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aijobs.store.sqlite.schema import SHOWN_STATE
from tests.integration.harness import TERMINAL, System

FINISHED_ONE = re.compile(r"job finish worker=\S+ job=(\S+) accepted=True")
FINISHED_BATCH = re.compile(r"jobs finish worker=\S+ jobs=(\S+) accepted=True")


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
            return await check_invariants(store)
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
        return problems
    finally:
        db.close()


def assert_each_ended_once(
    system: System, jobs: Iterable[str], *, all_jobs: bool = True
) -> dict[str, dict[str, Any]]:
    """Every job in `jobs` ended exactly once: a terminal state, its result committed once if
    it completed and never if it did not; with `all_jobs`, the store holds these jobs and no
    other. Returns each job's final status."""
    jobs = set(jobs)
    log = system.home / "worker.log"
    commits = accepted_commits(log.read_text(errors="replace") if log.exists() else "")
    finals = {job: system.status(job) for job in jobs}
    for job, final in finals.items():
        assert final["status"] in TERMINAL, final
        assert commits[job] == (final["status"] == "completed"), (job, commits[job], final)
    if all_jobs:
        body = system.get("/jobs", params={"limit": 1000}).json()
        listed = [j["job_id"] for j in body["jobs"]]
        assert len(listed) == body["total"] == len(set(listed))
        assert set(listed) == jobs
    return finals
