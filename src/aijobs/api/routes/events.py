"""GET /jobs/{job_id}/events: a job's state changes, progress and log lines as Server-Sent Events.

Events are derived from the parts of the job record that only grow or change in steps: its
state and attempt, its per-epoch history, its progress (fraction and metrics) and its log's
absolute offset. Each event's id is a cursor that says how much of each the client has seen,
`<attempt>.<state>.<history entries>.<progress digest>.<log offset>`, so a reconnect with
Last-Event-ID resumes exactly where the last event it received left off: nothing is lost and
nothing sent twice. The stream reads the job every AIJOBS_EVENTS_POLL_SECONDS (its end wakes it
at once: JobStore.wait_terminal) and ends after the event of its final state.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import Response, StreamingResponse

from aijobs import errors
from aijobs.api.auth import Caller, CallerDep
from aijobs.api.deps import SettingsDep, StoreDep
from aijobs.api.errors import error_responses
from aijobs.api.logview import LogView
from aijobs.api.ratelimit import ReadLimit
from aijobs.api.routes.jobs import JobId, server_stopping
from aijobs.api.schemas import JobStatus
from aijobs.jobs import Job, State
from aijobs.store import JobStore

router = APIRouter(tags=["jobs"])

LOG_EVENT_MAX = 65_536  # characters of log one event carries at most
RETRY_MS = 1000  # the reconnection delay the stream asks an EventSource for
NOTHING = "-"  # a cursor's state or digest before the client saw any
_CURSOR = re.compile(r"^(\d{1,9})\.([a-z]+|-)\.(\d{1,9})\.([0-9a-f]{8}|-)\.(\d{1,19})$")


@dataclass(frozen=True)
class Cursor:
    """What a client has seen of a job: the id of the last event it received."""

    attempt: int = 0
    state: str = NOTHING
    history: int = 0  # entries of the attempt's history
    digest: str = NOTHING  # of the last progress (fraction and metrics) sent
    log: int = 0  # the log's offset up to which it was sent

    def __str__(self) -> str:
        return f"{self.attempt}.{self.state}.{self.history}.{self.digest}.{self.log}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        match = _CURSOR.match(text.strip())
        if match is None or (match[2] != NOTHING and match[2] not in set(State)):
            raise errors.BadRequest(
                f"Last-Event-ID {text[:100]!r} is not an id this stream sent: send the id of "
                "the last event received, or none to start from the beginning"
            )
        return cls(int(match[1]), match[2], int(match[3]), match[4], int(match[5]))


def progress_digest(job: Job) -> str:
    """A short digest of the job's progress and metrics; NOTHING while it reports none."""
    if not job.progress and not job.metrics:
        return NOTHING
    text = json.dumps([job.progress, job.metrics], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


Event = tuple[str, dict[str, Any], Cursor]


def job_events(job: Job, seen: Cursor, who: Caller) -> Iterator[Event]:
    """The events that bring a client who has seen `seen` up to `job`, each with the cursor
    after it. A new state comes first, but the final one last (after the last progress and
    output)."""
    cursor = seen
    new_run = job.attempt != cursor.attempt
    if new_run:  # its history starts over
        cursor = replace(cursor, attempt=job.attempt, history=0, digest=NOTHING)
    state_changed = new_run or job.state.value != seen.state
    if state_changed and not job.terminal:
        cursor = replace(cursor, state=job.state.value)
        yield "state", _status(job, who), cursor
    history = job.history
    start = cursor.history if len(history) >= cursor.history else 0  # shrunk: from the start
    digest = progress_digest(job)
    if len(history) != cursor.history or digest != cursor.digest:
        cursor = replace(cursor, history=len(history), digest=digest)
        data = {
            "attempt": job.attempt,
            "progress": job.progress,
            "metrics": job.metrics,
            "history_from": start,  # the index in the run's history of the first entry here
            "history": history[start:],
        }
        yield "progress", data, cursor
    view = LogView.of(job)
    offset = view.clamp(cursor.log)
    while offset < view.total:
        text, begin, end = view.cut(offset, offset + LOG_EVENT_MAX, who, align_begin=False)
        if end <= begin:
            break  # the rest is part of a line not finished yet
        cursor = replace(cursor, log=end)
        yield "log", {"offset": begin, "end": end, "text": text}, cursor
        offset = end
    if state_changed and job.terminal:
        cursor = replace(cursor, state=job.state.value)
        yield "state", _status(job, who), cursor


def _status(job: Job, who: Caller) -> dict[str, Any]:
    return JobStatus.of(who.job(job)).model_dump(mode="json")


def _sse(name: str, data: dict[str, Any], cursor: Cursor) -> str:
    return f"id: {cursor}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(
    store: JobStore, who: Caller, job: Job, seen: Cursor, poll: float, heartbeat: float
) -> AsyncIterator[str]:
    """The response body: `job`'s events after `seen`, then the job read every `poll` seconds
    (or at once when it ends) for more, a comment after `heartbeat` quiet seconds, until the
    job's final event (or the server stops: the client resumes from another)."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = loop.time()
    while True:
        for name, data, after in job_events(job, seen, who):
            yield _sse(name, data, after)
            seen, quiet_since = after, loop.time()
        if job.terminal or server_stopping():
            return  # the end; or the server stops, and the client resumes from another
        if loop.time() - quiet_since >= heartbeat:
            yield ": keep-alive\n\n"
            quiet_since = loop.time()
        try:
            await store.wait_terminal(job.id, poll)  # a pause that the job's end cuts short
            job = await store.get(job.id)
        except errors.AIJobsError:
            return  # the job was trimmed, or the store is down: the client reconnects later


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events: state, progress and log, until the job ends",
        },
        204: {"description": "The job has ended and the client has seen all of its events"},
        **error_responses(400, 403, 404, 422, 429, 503),
    },
    summary="Follow a job: its state, progress and log as Server-Sent Events",
    dependencies=[ReadLimit],
)
async def job_events_stream(
    job_id: JobId,
    store: StoreDep,
    settings: SettingsDep,
    who: CallerDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=200,
            description="Resume after the event with this id (a reconnecting client sends it)",
        ),
    ] = None,
) -> Response:
    """Events `state` (the job's status, as GET /jobs/{id}/status gives it), `progress`
    (fraction, metrics and the new per-epoch history entries) and `log` (new output at its
    absolute offset), each with an id to resume from; comments keep an idle stream open. The
    response ends after the job's final `state` event; a reconnect after that answers 204."""
    seen = Cursor.parse(last_event_id)
    job = await store.get(job_id)
    who.job(job)  # the same ownership check as the status route, before the stream starts
    if job.terminal and next(job_events(job, seen, who), None) is None:
        # Nothing left to send, ever: 204 is what tells an EventSource to stop reconnecting.
        return Response(status_code=204)
    stream = event_stream(
        store, who, job, seen, settings.events_poll_seconds, settings.events_heartbeat_seconds
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
