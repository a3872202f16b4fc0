"""An audit of a Redis store's indexes: the oracle of the chaos tests and the soak, and an ops tool.

    python -m aijobs.store.redis.check redis://host:6379/0 [--prefix aijobs]

It checks the invariant stated in scripts/_lib.lua: every job is in ``all`` and in exactly
the ``state:<s>`` index of its state; a pending job is in exactly ``ready:<its queue>`` (with its
rank) and no lease; a running job has a token, an owner and exactly one lease entry whose score is
its deadline; a terminal job is in no claim index and in ``finished``; no index names a job that
does not exist; counts equal the state indexes per queue; an idempotency key names a job that
carries it. Unlike everything on the request path, it SCANs the keyspace (and so costs
O(stored jobs)): run it on demand, not from a hot loop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from typing import Any

from aijobs.jobs import TERMINAL, State
from aijobs.store.redis.codec import RANK_LEN
from aijobs.store.redis.store import RedisStore

BATCH = 500


async def _scan(store: RedisStore, pattern: str) -> list[str]:
    client = store.client()
    return [k async for k in client.scan_iter(match=pattern, count=1000)]


async def _zset(store: RedisStore, key: str) -> dict[str, float]:
    rows: list[Any] = await store.client().zrange(key, 0, -1, withscores=True)
    return {str(member): float(score) for member, score in rows}


async def check_invariants(store: RedisStore) -> list[str]:
    """Every violation found, in words; [] when the store is consistent."""
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

    problems: list[str] = []
    every = await _zset(store, store.k("all"))
    states = {s.value: await _zset(store, store.k("state", s.value)) for s in State}
    leases = await _zset(store, store.k("leases"))
    finished = await _zset(store, store.k("finished"))
    ready_head = len(store.k("ready", ""))
    ready: dict[str, dict[str, float]] = {
        key[ready_head:]: await _zset(store, key)
        for key in await _scan(store, _glob(store.k("ready", "")) + "*")
    }
    raw_counts: dict[Any, Any] = await client.hgetall(store.k("counts"))
    counts = {k: int(v) for k, v in raw_counts.items()}

    in_ready: dict[str, list[tuple[str, str]]] = {}
    for queue, members in ready.items():
        for rank in members:
            in_ready.setdefault(rank[RANK_LEN:], []).append((queue, rank))

    actual: Counter[str] = Counter()
    for job_id, row in jobs.items():
        state, queue = row.get("state", "?"), row.get("queue", "?")
        actual[f"{state}:{queue}"] += 1
        seq = float(row.get("seq", "nan"))
        if every.get(job_id) != seq:
            problems.append(f"{job_id}: not in 'all' with its seq")
        where = [s for s, members in states.items() if job_id in members]
        if where != [state] or states[state].get(job_id) != seq:
            problems.append(f"{job_id}: {state}, but in state indexes {where}")
        claim_idx = in_ready.get(job_id, [])
        if state == State.PENDING:
            if claim_idx != [(queue, row.get("rank"))]:
                problems.append(f"{job_id}: pending in {queue}, but in ready sets {claim_idx}")
            if job_id in leases or "token" in row or "lease_until" in row:
                problems.append(f"{job_id}: pending, but holds a lease or token")
        elif state == State.RUNNING:
            if claim_idx:
                problems.append(f"{job_id}: running, but also ready in {claim_idx}")
            if leases.get(job_id) != float(row.get("lease_until", "nan")):
                problems.append(f"{job_id}: running, but its lease index entry is wrong")
            if not row.get("token") or not row.get("owner"):
                problems.append(f"{job_id}: running without a token or owner")
        elif state in TERMINAL:
            if claim_idx or job_id in leases or "lease_until" in row:
                problems.append(f"{job_id}: {state}, but still in a claim index or leased")
            if job_id not in finished:
                problems.append(f"{job_id}: {state}, but not in the retention index")
        else:
            problems.append(f"{job_id}: unknown state {state!r}")

    for name, members in [("all", every), ("leases", leases), ("finished", finished)] + [
        (f"state:{s}", m) for s, m in states.items()
    ]:
        problems += [f"index {name} names missing job {j}" for j in members if j not in jobs]
    problems += [f"ready set names missing job {j}" for j in in_ready if j not in jobs]
    for key, n in counts.items():
        if n != actual.get(key, 0):
            problems.append(f"counts[{key}] = {n}, but {actual.get(key, 0)} jobs")
    problems += [f"counts lack {key} ({n} jobs)" for key, n in actual.items() if key not in counts]

    idem_head = len(store.k("idem", ""))
    for key in await _scan(store, _glob(store.k("idem", "")) + "*"):
        named: Any = await client.get(key)
        if named is None or named not in jobs or jobs[named].get("idem") != key[idem_head:]:
            problems.append(f"idempotency key {key[idem_head:]!r} names {named}, not its job")
    return problems


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
