"""What the sync and async clients share: errors, requests as data, retries, response parsing.

Each operation is a `Call`: the HTTP request to make plus how to read its answer. The clients
only send calls (with retries) and hand the response to `Call.parse`, so the two stay in step.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from aijobs import __version__
from aijobs.api.schemas import JobList, JobStatus
from aijobs.jobs import TERMINAL, State

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://localhost:8000"
USER_AGENT = f"aijobs-python/{__version__}"
MAX_WAIT = 60.0  # the API's cap on ?wait= (seconds)
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # busy or briefly down: worth another try
TERMINAL_STATES = frozenset(s.value for s in TERMINAL)


def default_url() -> str:
    """$AIJOBS_URL, else http://localhost:8000."""
    return os.environ.get("AIJOBS_URL") or DEFAULT_URL


# -- errors ------------------------------------------------------------------------------------
class APIError(Exception):
    """The API answered with an error: the envelope `{"error", "detail", "status_code"}`."""

    def __init__(self, error: str, detail: str, status_code: int | None, body: Any = None) -> None:
        self.error = error
        self.detail = detail
        self.status_code = status_code
        self.body = body
        prefix = f"{status_code} " if status_code is not None else ""
        super().__init__(f"{prefix}{error}: {detail}")


class NotFoundError(APIError):
    """404: no such job or model."""


class APIConnectionError(APIError, ConnectionError):
    """The server could not be reached (or stopped answering), retries included.

    `status_code` is None: no HTTP answer came back.
    """


class WaitTimeout(TimeoutError):
    """The job was still active when the wait ran out; `last` is its latest status."""

    def __init__(self, job_id: str, timeout: float, last: JobStatus) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.last = last
        super().__init__(
            f"Job {job_id} did not complete within {timeout:g} seconds (still {last.status})"
        )


def raise_for_envelope(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body and "detail" in body:
        error, detail = str(body["error"]), str(body["detail"])
    else:  # not our API (a proxy's page?): say what came back
        error = response.reason_phrase or "HTTP error"
        detail = response.text[:500] or f"HTTP {response.status_code}"
    cls = NotFoundError if response.status_code == 404 else APIError
    raise cls(error, detail, response.status_code, body)


def json_body(response: httpx.Response) -> Any:
    raise_for_envelope(response)
    try:
        return response.json()
    except ValueError as exc:
        raise APIError(
            "Invalid response",
            f"expected JSON from {response.request.url}, got: {response.text[:200]!r}",
            response.status_code,
        ) from exc


def text_body(response: httpx.Response) -> str:
    raise_for_envelope(response)
    return response.text


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate(json_body(response))

    return parse


def _key(key: str) -> Callable[[httpx.Response], list[dict[str, Any]]]:
    def parse(response: httpx.Response) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json_body(response)[key]
        return rows

    return parse


# -- calls -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call(Generic[T]):
    """One operation: the request, whether a retry is harmless, and how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_safe: bool = True
    hold: float = 0.0  # seconds the server may hold the request (long-poll): added to read timeout


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/jobs/{quote(job_id, safe='')}{suffix}"


def submit(
    kind: str,
    body: dict[str, Any],
    idempotency_key: str | None,
    parse: Callable[[httpx.Response], T],
) -> Call[T]:
    """POST /jobs/{kind}; the Idempotency-Key (one per logical submission, reused by every retry)
    means a retried POST whose first answer was lost never creates a second job."""
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", f"/jobs/{kind}", parse, json=body, headers={"Idempotency-Key": key})


def training_body(
    model_type: str,
    data_path: str,
    hyperparameters: Mapping[str, Any] | None,
    description: str | None,
    requires_gpu: bool,
    framework_override: str | None,
    priority: int,
    timeout_seconds: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_type": model_type,
        "data_path": data_path,
        "requires_gpu": requires_gpu,
    }
    if hyperparameters is not None:
        body["hyperparameters"] = dict(hyperparameters)
    return _optional(body, description, framework_override, priority, timeout_seconds)


def inference_body(
    model_id: str,
    input_data: str,
    parameters: Mapping[str, Any] | None,
    priority: int,
    timeout_seconds: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model_id": model_id, "input_data": input_data}
    if parameters is not None:
        body["parameters"] = dict(parameters)
    return _optional(body, None, None, priority, timeout_seconds)


def _optional(
    body: dict[str, Any],
    description: str | None,
    framework_override: str | None,
    priority: int,
    timeout_seconds: float | None,
) -> dict[str, Any]:
    extra = {
        "description": description,
        "framework_override": framework_override,
        "priority": priority or None,
        "timeout_seconds": timeout_seconds,
    }
    return body | {k: v for k, v in extra.items() if v is not None}


def status(job_id: str, wait: float | None) -> Call[JobStatus]:
    if wait is not None and wait > 0:
        held = min(float(wait), MAX_WAIT)
        return Call("GET", job_path(job_id, "/status"), model(JobStatus), {"wait": held}, hold=held)
    return Call("GET", job_path(job_id, "/status"), model(JobStatus))


def cancel(job_id: str) -> Call[JobStatus]:
    return Call("DELETE", job_path(job_id), model(JobStatus))


def already_cancelled_maybe(response: httpx.Response) -> bool:
    """A 400 to a cancel that may be a retry of one that landed: worth checking the status."""
    return response.status_code == 400


def list_page(status: str | State | None, limit: int, offset: int) -> Call[JobList]:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if status is not None:
        params["status"] = State(status).value
    return Call("GET", "/jobs", model(JobList), params)


def logs(job_id: str) -> Call[str]:
    return Call("GET", job_path(job_id, "/logs"), text_body)


def catalog(path: str, key: str) -> Call[list[dict[str, Any]]]:
    return Call("GET", path, _key(key))


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", json_body)


# -- retries -----------------------------------------------------------------------------------
# Errors where the request never left this machine: a retry can never duplicate anything.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Errors worth another try: the network, a timeout, a connection the server dropped.
RETRYABLE = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # tries after the first one
    backoff: float = 0.25  # first delay (s); doubles each time, with jitter
    max_backoff: float = 5.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        after = _retry_after(response) if response is not None else None
        if after is not None:
            return min(after, self.max_backoff)
        base = min(self.max_backoff, self.backoff * 2.0**attempt)
        return base * random.uniform(0.5, 1.0)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def connection_error(base_url: str, exc: Exception, attempts: int) -> APIConnectionError:
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    reason = str(exc) or type(exc).__name__
    return APIConnectionError(
        "Connection failed", f"cannot reach the aijobs API at {base_url}: {reason}{tries}", None
    )


def timeout_for(call: Call[Any], timeout: httpx.Timeout) -> httpx.Timeout:
    if not call.hold:
        return timeout
    read = None if timeout.read is None else timeout.read + call.hold
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def client_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """The headers of every request: the API key (or token) as a bearer credential, unless
    `headers` carry their own Authorization."""
    key = api_key or os.environ.get("AIJOBS_API_KEY")
    credentials = {"Authorization": f"Bearer {key}"} if key else {}
    return {"User-Agent": USER_AGENT, **credentials, **(headers or {})}


# -- waiting -----------------------------------------------------------------------------------
@dataclass
class WaitClock:
    """Plans the long-polls of one wait: how long each may hold, and when the wait is over."""

    job_id: str
    every: float
    timeout: float | None
    start: float = field(default_factory=time.monotonic)

    def next_hold(self) -> float:
        hold = min(max(self.every, 0.0), MAX_WAIT)
        if self.timeout is not None:
            hold = min(hold, max(0.0, self.start + self.timeout - time.monotonic()))
        return hold

    def expired(self) -> bool:
        return self.timeout is not None and time.monotonic() - self.start >= self.timeout

    def check(self, last: JobStatus) -> None:
        if self.expired():
            raise WaitTimeout(self.job_id, self.timeout or 0.0, last)

    @staticmethod
    def pause(hold: float, spent: float) -> float:
        """How long to sleep when a long-poll came back early on an active job.

        Our API holds the request for `hold` seconds; one that answers at once (an older server,
        a proxy) is polled at most once a second rather than hammered.
        """
        return max(0.0, min(hold, 1.0) - spent)


def is_terminal(status: JobStatus) -> bool:
    return status.status in TERMINAL


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobEvent:
    """One event of GET /jobs/{id}/events: `event` is "state" (`data` is the job's status),
    "progress" (fraction, metrics, new history entries) or "log" (output at an offset); `id`
    resumes the stream after it."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def final(self) -> bool:
        """The job's last event: its terminal state."""
        return self.event == "state" and self.data.get("status") in TERMINAL_STATES


class EventParser:
    """Reads a text/event-stream line by line (the fields this API sends)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def feed(self, line: str) -> JobEvent | None:
        """The event that `line` completes, if any."""
        if line:
            if not line.startswith(":"):  # a comment (heartbeat) otherwise
                name, _, value = line.partition(":")
                self.fields[name] = value.removeprefix(" ")
            return None
        fields, self.fields = self.fields, {}
        if "data" not in fields or "id" not in fields:
            return None  # the retry field, or a blank line
        return JobEvent(fields["id"], fields.get("event", "message"), json.loads(fields["data"]))


def apply_event(status: JobStatus | None, event: JobEvent) -> JobStatus | None:
    """The job's status after `event` (None until the first state event)."""
    if event.event == "state":
        return JobStatus.model_validate(event.data)
    if event.event == "progress" and status is not None:
        history = status.history[: event.data.get("history_from", 0)]
        return status.model_copy(
            update={
                "progress": event.data.get("progress", status.progress),
                "metrics": event.data.get("metrics", status.metrics),
                "history": history + list(event.data.get("history", [])),
            }
        )
    return status


@dataclass
class EventStream:
    """One job's event stream across its connections: where the next one resumes
    (Last-Event-ID), the events the lines of the current one complete, and when to open the
    next: at once the first time after an event came through, then backing off; a stream that
    keeps failing raises."""

    policy: RetryPolicy
    last_event_id: str | None = None
    failures: int = 0
    parser: EventParser = field(default_factory=EventParser)

    def headers(self) -> dict[str, str]:
        """A new connection's request headers; its lines start a new event."""
        self.parser = EventParser()
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def feed(self, line: str) -> JobEvent | None:
        """The event that `line` completes, if any; the stream resumes after it."""
        event = self.parser.feed(line)
        if event is not None:
            self.last_event_id = event.id
            self.failures = 0
        return event

    def next_delay(self, base_url: str, exc: Exception | None) -> float:
        if self.failures >= self.policy.retries:
            raise connection_error(
                base_url, exc or ConnectionError("stream ended"), 1 + self.failures
            )
        delay = self.policy.delay(self.failures)
        self.failures += 1
        return delay


def stream_timeout(timeout: httpx.Timeout, deadline: float | None) -> httpx.Timeout:
    """The timeouts of an event stream's request: a read ends by the wait's deadline."""
    read = timeout.read
    if deadline is not None:
        read = max(0.001, min(read or 60.0, deadline - time.monotonic()))
    return httpx.Timeout(timeout.connect, read=read)


def raise_unless_busy(response: httpx.Response) -> None:
    """An event stream's error answer: raised, unless a retry may do better (429, 503, ...)."""
    if response.status_code not in RETRY_STATUSES:
        raise_for_envelope(response)
