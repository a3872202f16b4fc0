"""What the Redis store's Python and its Lua scripts share: the scripts' text, and the jobs.

Each script (``scripts/*.lua``) is sent as the shared prelude ``_lib.lua`` (and ``_claim.lua``
for the two that claim) followed by the script's body, under a header that defines, from here,
what both sides must agree on: the job fields a script returns (``FIELDS``, from the Job model)
and the layout of a pending job's rank.

The scripts store every field as a string (JSON for the dict and list fields, integer
milliseconds of the server's clock for timestamps) and return a job as its JOB_FIELDS values in
order. A pending job's place in its queue is its rank: a priority key, then the sequence number,
then the id, so that lexicographic order is priority descending, then FIFO.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any

from aijobs import errors
from aijobs.jobs import (
    JOB_FIELDS,
    ROW_FIELDS,
    Claim,
    Finish,
    Job,
    JobType,
    NewJob,
    PendingLimits,
    State,
    new_job_id,
    shown_state,
)
from aijobs.store.base import compact_json
from aijobs.store.stats import BUCKET_BOUNDS_MS

PRIORITY_SPAN = 2**31 - 1  # priorities are ordered exactly within ±(2^31 - 1), clamped beyond
PRIORITY_DIGITS = len(str(2 * PRIORITY_SPAN))  # 10
SEQ_DIGITS = 16  # a job's sequence number in its rank, zero-padded
RANK_LEN = PRIORITY_DIGITS + SEQ_DIGITS  # the rank's prefix before the job id


def seconds(ms: str | None) -> float | None:
    return None if ms is None else int(ms) / 1000.0


def _json(text: str | None, empty: str) -> Any:
    """A JSON field; `empty` (its default, "{}" or "[]", what most jobs hold) without a parse."""
    if not text or text == empty:
        return {} if empty == "{}" else []
    return json.loads(text)


def decode_job(
    values: Sequence[str | None],
    log_text: str | None = None,
    fields: Sequence[str] = JOB_FIELDS,
) -> Job:
    """A Job from a script's reply: its `fields` values in order (and its log, if read); a
    listing's ROW_FIELDS leave the large fields out, which keep Job's defaults."""
    if fields is JOB_FIELDS:  # every job read but a listing's rows
        f: dict[str, Any] = dict(zip(JOB_FIELDS, values, strict=True))
    else:
        f = dict.fromkeys(JOB_FIELDS) | dict(zip(fields, values, strict=True))
    missing = [name for name in _REQUIRED if f[name] is None]
    if missing:
        raise errors.AIJobsError(f"job record {f['id']!r} lacks {missing[0]}")
    timeout, result = f["timeout_seconds"], f["result"]
    # Built from our own scripts' replies, every field already of its type: no validation pass
    # (this runs for every job a worker claims).
    return Job.model_construct(
        id=f["id"],
        job_type=JobType(f["job_type"]),
        queue=f["queue"],
        state=shown_state(f["state"], f["started_at"]),
        payload=_json(f["payload"], "{}"),
        model_type=f["model_type"],
        model_id=f["model_id"],
        description=f["description"],
        priority=int(f["priority"]),
        attempt=int(f["attempt"]),
        max_attempts=int(f["max_attempts"]),
        timeout_seconds=None if timeout is None else float(timeout),
        progress=float(f["progress"]),
        metrics=_json(f["metrics"], "{}"),
        history=_json(f["history"], "[]"),
        result=None if result is None else json.loads(result),
        error=f["error"],
        principal=f["principal"],
        owner=f["owner"],
        cancel_requested=f["cancel_requested"] == "1",
        created_at=int(f["created_at"]) / 1000.0,
        updated_at=int(f["updated_at"]) / 1000.0,
        started_at=seconds(f["started_at"]),
        finished_at=seconds(f["finished_at"]),
        log_length=int(f["log_length"] or 0),  # a job stored before logs were streamed: none
        log=log_text,
    )


def decode_claims(reply: Sequence[tuple[str, Sequence[str | None]]]) -> list[Claim]:
    """The claims of a script that claims (claim_jobs in _claim.lua): {token, job fields}."""
    return [Claim(job=decode_job(fields), token=token) for token, fields in reply]


# The fields decode_job needs; a record without one of them is refused in words.
_REQUIRED = (
    "id",
    "job_type",
    "queue",
    "state",
    "priority",
    "attempt",
    "max_attempts",
    "progress",
    "cancel_requested",
    "created_at",
    "updated_at",
)


@functools.lru_cache(maxsize=1024)  # a submit's; most share a few
def durations_key(job_type: JobType | str, model_type: str | None, queue: str) -> str:
    """Which run-time history a job adds to when it completes (recent_durations reads it)."""
    return compact_json([JobType(job_type).value, model_type, queue])


def priority_key(priority: int) -> str:
    """PRIORITY_DIGITS digits that sort lexicographically as priority descending."""
    clamped = max(-PRIORITY_SPAN, min(PRIORITY_SPAN, priority))
    return f"{PRIORITY_SPAN - clamped:0{PRIORITY_DIGITS}d}"


def limit_args(limits: PendingLimits | None) -> list[Any]:
    """The submit script's limit arguments, one per field of PendingLimits ('' for none)."""
    return ["" if value is None else int(value) for value in (limits or PendingLimits())]


def submit_args(
    job: NewJob,
    idempotency_key: str | None = None,
    limits: PendingLimits | None = None,
    require_model: bool = False,
) -> list[Any]:
    """The submit script's own arguments for `job`, under a new job id."""
    fields: list[Any] = [
        "job_type",
        JobType(job.job_type).value,
        "payload",
        compact_json(job.payload),
        "priority",
        int(job.priority),
        "max_attempts",
        int(job.max_attempts),
        "durkey",
        durations_key(job.job_type, job.model_type, job.queue),
    ]
    for name in ("model_type", "model_id", "description", "principal"):
        if (value := getattr(job, name)) is not None:
            fields += [name, value]
    if job.timeout_seconds is not None:
        fields += ["timeout_seconds", repr(float(job.timeout_seconds))]
    key = idempotency_key or ""
    seed = secrets.token_hex(12)  # of the fencing token, if the job is handed to a waiter
    return [
        new_job_id(),
        key,
        priority_key(job.priority),
        job.queue,
        seed,
        "1" if require_model else "",
        *limit_args(limits),
        *fields,
    ]


def finish_args(finishes: Sequence[Finish]) -> list[Any]:
    """The finish script's own arguments: eight per job (finish.lua)."""
    args: list[Any] = []
    for f in finishes:
        model_args: list[Any] = ["", "", 0]
        if f.model is not None:
            created = int(f.model.created_at * 1000)
            model_args = [f.model.model_id, f.model.model_dump_json(), created]
        has_log = "0" if f.log is None else "1"
        args += [f.job_id, f.token, compact_json(f.result), has_log, f.log or "", *model_args]
    return args


_PAYLOAD_ARG = 6 + len(PendingLimits._fields) + 3  # submit_args: the payload's JSON


def submitted_job(job: NewJob, args: Sequence[Any], created_ms: str) -> Job:
    """The job that the submit script stored from `args` (submit_args of `job`) at
    `created_ms`, as a read of it would return it: built from what was sent, not read back.
    A new job's own fields are those scripts/submit.lua gives it (pending, attempt 0, no
    progress, metrics, history or owner); its payload is parsed from the JSON sent, as a read
    does. Every field is given: pydantic's model_construct resolves each one left out through
    its default, and a default_factory by inspecting its signature on every call, which cost
    more than the rest of the submit (200 us against 15)."""
    created = int(created_ms) / 1000.0
    timeout = job.timeout_seconds
    return Job.model_construct(
        id=args[0],
        job_type=JobType(job.job_type),
        queue=job.queue,
        state=State.PENDING,
        payload=_json(args[_PAYLOAD_ARG], "{}"),
        model_type=job.model_type,
        model_id=job.model_id,
        description=job.description,
        priority=int(job.priority),
        attempt=0,
        max_attempts=int(job.max_attempts),
        timeout_seconds=None if timeout is None else float(timeout),
        progress=0.0,
        metrics={},
        history=[],
        result=None,
        error=None,
        principal=job.principal,
        owner=None,
        cancel_requested=False,
        created_at=created,
        updated_at=created,
        started_at=None,
        finished_at=None,
        log_length=0,
        log=None,
    )


WRITE_SCRIPTS = (
    "submit",
    "claim",
    "renew",
    "finish",
    "fail",
    "cancel",
    "rescue",
    "register_worker",
    "unregister_worker",
    "stop_waiting",
    "watch",
    "wait",
    "create_key",
    "revoke_key",
    "take_tokens",
    "delete_model",
    "forget_unused_models",
)
READ_SCRIPTS = ("list", "live_workers", "list_models", "queue_position", "oldest_waiting")
ALL_SCRIPTS = (*WRITE_SCRIPTS, *READ_SCRIPTS)


def _lua_list(names: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


def _header() -> str:
    return (
        "-- Defined by aijobs.store.redis.codec, shared with the Python side:\n"
        f"local FIELDS = {_lua_list(JOB_FIELDS)}  -- a job's fields, in Job's order; no log\n"
        f"local ROW_FIELDS = {_lua_list(ROW_FIELDS)}  -- what a listing reads of a job\n"
        f"local N_LIMITS = {len(PendingLimits._fields)}  -- submit's limit arguments\n"
        f"local SEQ_DIGITS = {SEQ_DIGITS}  -- the zero-padded sequence number in a rank\n"
        f"local RANK_LEN = {RANK_LEN}  -- priority key and sequence number, then the id\n"
        f"local BUCKET_BOUNDS_MS = {{{', '.join(map(str, BUCKET_BOUNDS_MS))}}}  -- histograms\n\n"
    )


def _library() -> tuple[str, str]:
    """The function library (its name, its text for FUNCTION LOAD): _lib.lua and _claim.lua,
    shared, then each script as a function, `<library>_<script>`. Its name carries a digest of
    its text, so that processes of two versions sharing a Redis each call their own."""
    folder = resources.files("aijobs.store.redis") / "scripts"
    read = {n: (folder / f"{n}.lua").read_text(encoding="utf-8") for n in ("_lib", "_claim")}
    read |= {name: (folder / f"{name}.lua").read_text(encoding="utf-8") for name in ALL_SCRIPTS}
    body = _header() + read["_lib"] + read["_claim"]
    for name in ALL_SCRIPTS:
        # no-writes: a read still works when Redis refuses writes (OOM, a read-only replica)
        flags = "{'no-writes'}" if name in READ_SCRIPTS else "{}"
        body += (
            f"redis.register_function{{function_name = LIBRARY .. '_{name}', flags = {flags},\n"
            f"callback = function(KEYS, ARGV)\nbegin(KEYS, ARGV)\n{read[name]}end}}\n\n"
        )
    library = "aijobs_" + hashlib.sha1(body.encode()).hexdigest()[:16]
    return library, f"#!lua name={library}\nlocal LIBRARY = '{library}'\n" + body


LIBRARY, LIBRARY_SOURCE = _library()


def function_name(script: str) -> str:
    """The name of `script`'s function in the library (FCALL)."""
    return f"{LIBRARY}_{script}"
