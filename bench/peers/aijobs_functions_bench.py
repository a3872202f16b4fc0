"""A baseline: aijobs' own Redis functions driven by bare loops, no Python job model.

    .venv/bin/python bench/peers/aijobs_functions_bench.py --redis-url redis://127.0.0.1:6379/0 \
        --variant bare

The producer calls the store's submit function (`FCALL`, hiredis-packed), its arguments built
once and only the job id and token seed changed per call. The worker makes the Redis calls an
idle `aijobs worker` makes, and nothing else: the wait function (which claims for it when work
is ready), a `BLPOP` of its inbox when it was not, `claim` of up to PREFETCH jobs while the
queue holds more, and one `finish` of each batch with its claims' tokens; no decoding into
Jobs, no logging, no lease renewal.

Two variants:

- `bare`: the producer on the blocking redis-py client Huey uses, the worker running nothing
  (one process). What aijobs' storage design costs a job, with the least client work around
  it: the floor under any Python around these functions.
- `api-child`: what aijobs' design adds to that, and no more: the producer submits from asyncio
  on uvloop, as an API process does (uvicorn), and the worker sends each batch to a child
  process over a pipe, one line per job, and reads one line back per job before the finish, as
  it does to isolate inference in its inference child.

It runs with the project's interpreter (the library's functions come from the aijobs package).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis
import uvloop
from _common import parse_args, redis_url, run

from aijobs import __version__
from aijobs.jobs import Finish, JobType, NewJob
from aijobs.store.redis import RedisStore
from aijobs.store.redis.codec import LIBRARY_SOURCE, finish_args, function_name, submit_args
from aijobs.store.redis.packing import pack_with_hiredis

# Never opened: its key prefix, key names and the scripts' leading arguments (its default
# retention), as the store's own calls have them.
STORE = RedisStore(redis_url(), prefix="aijobs-functions")
QUEUE = "sklearn"
PREFETCH = 256  # as aijobs_bench.py's worker
LEASE_MS = 300_000
BLOCK_S = 1
SUBMIT, WAIT, CLAIM, FINISH, WATCH = map(
    function_name, ("submit", "wait", "claim", "finish", "watch")
)
WORKER = "functions-worker"
VARIANTS = ("bare", "api-child")

Claims = list[tuple[str, str]]  # (job id, token)


def fcall(r: redis.Redis, function: str, *args: Any) -> Any:
    return r.fcall(function, 1, STORE.key, *STORE.script_argv(args))


def claimed(reply: list[tuple[str, list[str]]]) -> Claims:
    """A claiming script's {token, job fields} replies, as (job id, token)."""
    return [(fields[0], token) for token, fields in reply]


def claim(r: redis.Redis) -> Claims:
    return claimed(fcall(r, CLAIM, WORKER, LEASE_MS, PREFETCH, secrets.token_hex(12), 0, QUEUE))


def finish(r: redis.Redis, claims: Claims) -> None:
    fcall(
        r, FINISH, *finish_args([Finish(job_id, token, {"output": 0}) for job_id, token in claims])
    )


def child() -> None:
    """The worker's child in the api-child variant: one answer line per request line."""
    for line in sys.stdin:
        sys.stdout.write(json.dumps({"output": json.loads(line)["input_data"]}) + "\n")
        sys.stdout.flush()


class Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self, claims: Claims) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("".join(json.dumps({"input_data": i}) + "\n" for i, _ in claims))
        for _ in claims:
            json.loads(self.proc.stdout.readline())


def worker(with_child: bool) -> None:
    r = redis.Redis.from_url(redis_url(), decode_responses=True)
    inbox = STORE.k("inbox", WORKER)
    kid = Child() if with_child else None
    while True:
        serial = secrets.token_hex(6)
        reply = fcall(
            r,
            WAIT,
            WORKER,
            f"{serial} 0 {LEASE_MS}",
            BLOCK_S * 1000 - 50,
            PREFETCH,
            secrets.token_hex(12),
            QUEUE,
        )
        if reply == 1:
            popped = r.blpop([inbox], timeout=BLOCK_S)
            if popped is None or popped[1] == "hint":
                continue
            _, token, fields = json.loads(popped[1])
            claims = [(fields[0], token)]
        else:
            claims = claim(r) if reply == 0 else claimed(reply)
        while claims:
            if kid is not None:
                kid.run(claims)
            finish(r, claims)
            claims = claim(r) if len(claims) == PREFETCH else []


class AijobsFunctionsBench:
    version = __version__

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.api = variant == "api-child"
        self.name = f"aijobs-functions-{variant}"
        self.notes = (
            "aijobs' Redis functions from bare loops, hiredis: producer FCALL submit (arguments "
            f"built once) from {'asyncio on uvloop' if self.api else 'the blocking client'}; "
            f"worker wait / BLPOP / claim (up to {PREFETCH}) / "
            f"{'a child process hop (a pipe) / ' if self.api else ''}finish per batch, nothing "
            "else; round trip: submit, watch, then its Pub/Sub message"
        )
        self.r = redis.Redis.from_url(redis_url(), decode_responses=True)
        self.r.function_load(LIBRARY_SOURCE, replace=True)
        self.aio: aioredis.Redis | None = None
        job = NewJob(
            job_type=JobType.INFERENCE,
            queue=QUEUE,
            model_id="model",
            payload={"input_data": 0, "parameters": {}},
        )
        self.args = submit_args(job)
        self.pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(STORE.k("done"))

    async def open(self) -> None:
        if self.api:
            pool = aioredis.ConnectionPool.from_url(redis_url(), decode_responses=True)
            pack_with_hiredis(pool)
            self.aio = aioredis.Redis.from_pool(pool)

    async def close(self) -> None:
        if self.aio is not None:
            await self.aio.aclose()

    def worker_cmd(self) -> list[str]:
        return [sys.executable, "aijobs_functions_bench.py", "--worker", self.variant]

    async def enqueue(self, i: int) -> Any:
        job_id = uuid.uuid4().hex
        self.args[0], self.args[4] = job_id, secrets.token_hex(12)
        if self.aio is not None:
            await self.aio.fcall(SUBMIT, 1, STORE.key, *STORE.script_argv(self.args))  # type: ignore[misc]
        else:
            fcall(self.r, SUBMIT, *self.args)
        return job_id

    def pending(self, r: redis.Redis) -> int:
        return int(r.hget(STORE.k("counts"), f"pending:{QUEUE}") or 0)

    def done_many(self, r: redis.Redis, handles: list[Any]) -> list[bool]:
        pipe = r.pipeline(transaction=False)
        for job_id in handles:
            pipe.hget(STORE.k("job", job_id), "state")
        return [state == b"completed" for state in pipe.execute()]  # a raw client: bytes

    async def round_trip(self, i: int) -> Any:
        job_id = await self.enqueue(i)
        if not fcall(self.r, WATCH, job_id, 60_000)[1:]:  # not ended yet: its announcement
            while (m := self.pubsub.get_message(timeout=10)) is None or job_id not in m["data"]:
                pass
        return i


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    elif "--worker" in sys.argv:
        worker(with_child=sys.argv[-1] == "api-child")
    else:
        args = parse_args(VARIANTS)
        if args.variant == "api-child":
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        run(AijobsFunctionsBench(args.variant), args)
