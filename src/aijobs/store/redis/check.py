"""An audit of a Redis store's indexes: the oracle of the chaos tests and the soak, and an ops tool.

    python -m aijobs.store.redis.check redis://host:6379/0 [--prefix aijobs]

It checks the invariant stated in scripts/_lib.lua: every job is in ``all`` and in exactly
the ``state:<s>`` index of the state it shows (a running job not started yet shows pending); a
pending job is in exactly ``ready:<its queue>`` (with its rank) or, waiting out a retry's
back-off, in ``delayed`` (scored by its not_before), and holds no lease; a running job has a
token, an owner and exactly one lease entry whose score is its deadline; a terminal job is in no
claim index and in ``finished``; no index names a job that does not exist; counts equal the
shown states per queue; an idempotency key names a job that carries it; a job with a principal
is in exactly that principal's ``owned:all`` and ``owned:<the state it shows>`` indexes. Unlike
everything on the request path, it SCANs the keyspace (and so costs O(stored jobs)): run it on
demand, not from a hot loop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aijobs.jobs import TERMINAL, State, shown_state
from aijobs.store.redis.codec import RANK_LEN
from aijobs.store.redis.store import RedisStore

BATCH = 500


async def _scan(store: RedisStore, pattern: str) -> list[str]:
    client = store.client()
    return [k async for k in client.scan_iter(match=pattern, count=1000)]


async def _zset(store: RedisStore, key: str) -> dict[str, float]:
    rows: list[Any] = await store.client().zrange(key, 0, -1, withscores=True)
    return {str(member): float(score) for member, score in rows}


@dataclass
class _Snapshot:
    """The job hashes and every index that should agree with them, read once."""

    jobs: dict[str, dict[str, str]]
    every: dict[str, float]
    states: dict[str, dict[str, float]]
    leases: dict[str, float]
    delayed: dict[str, float]
    finished: dict[str, float]
    # job id -> the (queue, rank member) pairs that name it across all ready sets
    in_ready: dict[str, list[tuple[str, str]]]
    counts: dict[str, int]


async def check_invariants(store: RedisStore) -> list[str]:
    """Every violation found, in words; [] when the store is consistent."""
    snap = await _read_snapshot(store)
    problems: list[str] = []
    actual: Counter[str] = Counter()
    for job_id, row in snap.jobs.items():
        actual[f"{_shown(row)}:{row.get('queue', '?')}"] += 1
        problems += _job_problems(snap, job_id, row)
    problems += _dangling_problems(snap)
    problems += _count_problems(snap.counts, actual)
    problems += await _idempotency_problems(store, snap.jobs)
    problems += await _owned_problems(store, snap.jobs)
    return problems


async def _read_jobs(store: RedisStore) -> dict[str, dict[str, str]]:
    client = store.client()
    head = len(store.k("job", ""))
    jobs: dict[str, dict[str, str]] = {}
    job_keys = await _scan(store, _glob(store.k("job", "")) + "*")
    for i in range(0, len(job_keys), BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for key in job_keys[i : i + BATCH]:
                pipe.hgetall(key)
            for key, row in zip(job_keys[i : i + BATCH], await pipe.execute(), strict=True):
                if row:
                    jobs[key[head:]] = row
    return jobs


async def _read_snapshot(store: RedisStore) -> _Snapshot:
    jobs = await _read_jobs(store)
    every = await _zset(store, store.k("all"))
    states = {s.value: await _zset(store, store.k("state", s.value)) for s in State}
    leases = await _zset(store, store.k("leases"))
    delayed = await _zset(store, store.k("delayed"))
    finished = await _zset(store, store.k("finished"))
    ready_head = len(store.k("ready", ""))
    ready: dict[str, dict[str, float]] = {
        key[ready_head:]: await _zset(store, key)
        for key in await _scan(store, _glob(store.k("ready", "")) + "*")
    }
    raw_counts: dict[Any, Any] = await store.client().hgetall(store.k("counts"))
    counts = {k: int(v) for k, v in raw_counts.items()}

    in_ready: dict[str, list[tuple[str, str]]] = {}
    for queue, members in ready.items():
        for rank in members:
            in_ready.setdefault(rank[RANK_LEN:], []).append((queue, rank))
    return _Snapshot(jobs, every, states, leases, delayed, finished, in_ready, counts)


def _job_problems(snap: _Snapshot, job_id: str, row: dict[str, str]) -> list[str]:
    """What is wrong with one job's place in the indexes."""
    problems: list[str] = []
    state = row.get("state", "?")
    seq = float(row.get("seq", "nan"))
    if snap.every.get(job_id) != seq:
        problems.append(f"{job_id}: not in 'all' with its seq")
    where = [s for s, members in snap.states.items() if job_id in members]
    shown = _shown(row)
    if where != [shown] or snap.states.get(shown, {}).get(job_id) != seq:
        problems.append(f"{job_id}: {state} (shown {shown}), but in state indexes {where}")
    claim_idx = snap.in_ready.get(job_id, [])
    if state == State.PENDING:
        problems += _pending_problems(snap, job_id, row, claim_idx)
    elif state == State.RUNNING:
        problems += _running_problems(snap, job_id, row, claim_idx)
    elif state in TERMINAL:
        problems += _terminal_problems(snap, job_id, row, claim_idx)
    else:
        problems.append(f"{job_id}: unknown state {state!r}")
    return problems


def _shown(row: dict[str, str]) -> str:
    state = row.get("state", "?")
    known = state in {s.value for s in State}
    return shown_state(state, row.get("started_at")).value if known else state


def _pending_problems(
    snap: _Snapshot, job_id: str, row: dict[str, str], claim_idx: list[tuple[str, str]]
) -> list[str]:
    problems: list[str] = []
    queue = row.get("queue", "?")
    if "not_before" in row:  # waiting out a retry's back-off: in delayed, not ready yet
        if claim_idx or snap.delayed.get(job_id) != float(row["not_before"]):
            problems.append(f"{job_id}: pending after a retry, but in ready sets {claim_idx}")
    elif claim_idx != [(queue, row.get("rank"))] or job_id in snap.delayed:
        problems.append(f"{job_id}: pending in {queue}, but in ready sets {claim_idx}")
    if job_id in snap.leases or "token" in row or "lease_until" in row:
        problems.append(f"{job_id}: pending, but holds a lease or token")
    return problems


def _running_problems(
    snap: _Snapshot, job_id: str, row: dict[str, str], claim_idx: list[tuple[str, str]]
) -> list[str]:
    problems: list[str] = []
    if claim_idx or job_id in snap.delayed or "not_before" in row:
        problems.append(f"{job_id}: running, but also ready in {claim_idx} or delayed")
    if snap.leases.get(job_id) != float(row.get("lease_until", "nan")):
        problems.append(f"{job_id}: running, but its lease index entry is wrong")
    if not row.get("token") or not row.get("owner"):
        problems.append(f"{job_id}: running without a token or owner")
    return problems


def _terminal_problems(
    snap: _Snapshot, job_id: str, row: dict[str, str], claim_idx: list[tuple[str, str]]
) -> list[str]:
    problems: list[str] = []
    state = row["state"]
    if claim_idx or job_id in snap.leases or "lease_until" in row or job_id in snap.delayed:
        problems.append(f"{job_id}: {state}, but still in a claim index or leased")
    if job_id not in snap.finished:
        problems.append(f"{job_id}: {state}, but not in the retention index")
    return problems


def _dangling_problems(snap: _Snapshot) -> list[str]:
    """Index entries that name jobs which do not exist."""
    problems: list[str] = []
    indexes = [
        ("all", snap.every),
        ("leases", snap.leases),
        ("delayed", snap.delayed),
        ("finished", snap.finished),
    ]
    for name, members in indexes + [(f"state:{s}", m) for s, m in snap.states.items()]:
        problems += [f"index {name} names missing job {j}" for j in members if j not in snap.jobs]
    problems += [f"ready set names missing job {j}" for j in snap.in_ready if j not in snap.jobs]
    return problems


def _count_problems(counts: dict[str, int], actual: Counter[str]) -> list[str]:
    problems: list[str] = []
    for key, n in counts.items():
        if n != actual.get(key, 0):
            problems.append(f"counts[{key}] = {n}, but {actual.get(key, 0)} jobs")
    problems += [f"counts lack {key} ({n} jobs)" for key, n in actual.items() if key not in counts]
    return problems


async def _idempotency_problems(store: RedisStore, jobs: dict[str, dict[str, str]]) -> list[str]:
    problems: list[str] = []
    idem_head = len(store.k("idem", ""))
    for key in await _scan(store, _glob(store.k("idem", "")) + "*"):
        named: Any = await store.client().get(key)
        if named is None or named not in jobs or jobs[named].get("idem") != key[idem_head:]:
            problems.append(f"idempotency key {key[idem_head:]!r} names {named}, not its job")
    return problems


async def _owned_problems(store: RedisStore, jobs: dict[str, dict[str, str]]) -> list[str]:
    """Each principal's listing indexes hold exactly its jobs: all of them, and by the state
    each shows."""
    expected: dict[str, dict[str, float]] = {}
    for job_id, row in jobs.items():
        if (principal := row.get("principal")) is not None:
            for which in ("all", _shown(row)):
                expected.setdefault(f"{which}:{principal}", {})[job_id] = float(row["seq"])
    head = len(store.k("owned", ""))
    found = {
        key[head:]: await _zset(store, key)
        for key in await _scan(store, _glob(store.k("owned", "")) + "*")
    }
    return [
        f"owned index {name!r} holds {sorted(found.get(name, {}))}, "
        f"not {sorted(expected.get(name, {}))}"
        for name in sorted(set(expected) | set(found))
        if found.get(name, {}) != expected.get(name, {})
    ]


def _glob(text: str) -> str:
    """Escape glob metacharacters (the hash tag's braces are fine; brackets are not)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def summary(store: RedisStore) -> dict[str, Any]:
    """Jobs per state, from the indexes (cheap)."""
    client = store.client()
    return {s.value: await client.zcard(store.k("state", s.value)) for s in State}


async def _main(url: str, prefix: str) -> int:
    store = RedisStore(url, prefix=prefix)
    await store.open()
    try:
        problems = await check_invariants(store)
        print(await summary(store))
    finally:
        await store.close()
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("--prefix", default="aijobs")
    args = parser.parse_args()
    sys.exit(asyncio.run(_main(args.url, args.prefix)))
