"""The synchronous client (httpx.Client)."""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from aijobs.api.schemas import JobList, JobStatus, SubmitResponse
from aijobs.client import _core as core
from aijobs.jobs import State

T = TypeVar("T")


class Client:
    """A client for the aijobs API.

    >>> with Client("http://localhost:8000") as jobs:
    ...     job = jobs.submit_training("random_forest", "/data/tabular_data.csv")
    ...     done = jobs.wait(job.job_id)

    Connection errors, 429 and 502/503/504 are retried with exponential backoff (`retries`,
    `backoff`); submissions carry an Idempotency-Key, so a retry never creates a second job.
    Errors are raised as `APIError` (`NotFoundError` for 404, `APIConnectionError` when the
    server cannot be reached). `api_key` (else $AIJOBS_API_KEY), an API key or a JWT, is sent
    as `Authorization: Bearer` to an API that requires credentials.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or core.default_url()).rstrip("/")
        self.retry = core.RetryPolicy(retries=max(0, retries), backoff=backoff)
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            headers=core.client_headers(headers, api_key),
            transport=transport,
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __del__(self) -> None:
        # Code written against the API reference never closes its client: its connections are
        # released here, not left open for the garbage collector to find.
        with contextlib.suppress(Exception):
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------------
    def _send(self, call: core.Call[Any]) -> tuple[httpx.Response, bool]:
        """The response, and whether an earlier try of this call may have reached the server."""
        attempt, maybe_delivered = 0, False
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=core.timeout_for(call, self._timeout),
                )
            except core.RETRYABLE as exc:
                if not call.retry_safe or attempt >= self.retry.retries:
                    raise core.connection_error(self.base_url, exc, attempt + 1) from exc
                maybe_delivered |= not isinstance(exc, core.NOT_SENT)
                time.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if (
                response.status_code in core.RETRY_STATUSES
                and call.retry_safe
                and attempt < self.retry.retries
            ):
                time.sleep(self.retry.delay(attempt, response))
                attempt += 1
                maybe_delivered = True
                continue
            return response, maybe_delivered

    def _call(self, call: core.Call[T]) -> T:
        response, _ = self._send(call)
        return call.parse(response)

    # -- jobs ----------------------------------------------------------------------------------
    def submit_training(
        self,
        model_type: str,
        data_path: str,
        hyperparameters: Mapping[str, Any] | None = None,
        description: str | None = None,
        requires_gpu: bool = False,
        framework_override: str | None = None,
        priority: int = 0,
        timeout_seconds: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> SubmitResponse:
        """Submit a training job; it is routed to its framework's queue."""
        body = core.training_body(
            model_type,
            data_path,
            hyperparameters,
            description,
            requires_gpu,
            framework_override,
            priority,
            timeout_seconds,
        )
        return self._call(
            core.submit("training", body, idempotency_key, core.model(SubmitResponse))
        )

    def submit_inference(
        self,
        model_id: str,
        input_data: str,
        parameters: Mapping[str, Any] | None = None,
        priority: int = 0,
        timeout_seconds: float | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> SubmitResponse:
        """Submit an inference job with a trained model."""
        body = core.inference_body(model_id, input_data, parameters, priority, timeout_seconds)
        return self._call(
            core.submit("inference", body, idempotency_key, core.model(SubmitResponse))
        )

    def status(self, job_id: str, wait: float | None = None) -> JobStatus:
        """The job's status; with `wait` (seconds, at most 60), the server answers as soon as
        the job is completed, failed or cancelled, or when the wait runs out."""
        return self._call(core.status(job_id, wait))

    def watch(
        self, job_id: str, *, every: float = 1.0, timeout: float | None = None
    ) -> Iterator[JobStatus]:
        """Yield the job's status about every `every` seconds, and at once when it ends.

        Stops after the terminal status; raises WaitTimeout when `timeout` runs out first.
        """
        clock = core.WaitClock(job_id, every, timeout)
        while True:
            hold = clock.next_hold()
            started = time.monotonic()
            current = self.status(job_id, wait=hold)
            yield current
            if core.is_terminal(current):
                return
            clock.check(current)
            time.sleep(clock.pause(hold, time.monotonic() - started))

    def events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[core.JobEvent]:
        """Follow the job's events (GET /jobs/{id}/events): its state changes, progress and
        log output, as they happen, until its final state (the last event yielded).

        A dropped connection is opened again with the id of the last event received
        (Last-Event-ID), so nothing is missed or yielded twice. `last_event_id` resumes from an
        earlier stream. Raises WaitTimeout after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = core.EventStream(self.retry, last_event_id)
        path = core.job_path(job_id, "/events")
        while True:
            failure: Exception | None = None
            try:
                headers = stream.headers()
                limits = core.stream_timeout(self._timeout, deadline)
                with self._http.stream("GET", path, headers=headers, timeout=limits) as response:
                    if response.status_code == 204:
                        return  # the job ended, and every one of its events was received
                    if response.status_code != 200:
                        response.read()
                        core.raise_unless_busy(response)
                    else:
                        for line in response.iter_lines():
                            if (event := stream.feed(line)) is not None:
                                yield event
                                if event.final:
                                    return
            except core.RETRYABLE as exc:
                failure = exc
            if deadline is not None and time.monotonic() >= deadline:
                raise core.WaitTimeout(job_id, timeout or 0.0, self.status(job_id))
            # The stream ended early (a server stopping, a proxy) or failed: resume it.
            time.sleep(stream.next_delay(self.base_url, failure))

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 30.0) -> JobStatus:
        """Block until the job is completed, failed or cancelled; its final status.

        Uses the API's long-poll (each request held up to `poll` seconds), so the end is seen
        within milliseconds. Raises WaitTimeout (a TimeoutError) after `timeout` seconds.
        """
        last = None
        for last in self.watch(job_id, every=poll, timeout=timeout):  # noqa: B007
            pass
        assert last is not None
        return last

    def cancel(self, job_id: str) -> JobStatus:
        """Cancel a pending or running job (APIError 400 when it already ended)."""
        call = core.cancel(job_id)
        response, maybe_delivered = self._send(call)
        if maybe_delivered and core.already_cancelled_maybe(response):
            # Our first DELETE may have landed and only its answer was lost.
            current = self.status(job_id)
            if current.status is State.CANCELLED:
                return current
        return call.parse(response)

    def list_page(
        self, status: str | State | None = None, limit: int = 100, offset: int = 0
    ) -> JobList:
        """One page of GET /jobs (newest first), with the total."""
        return self._call(core.list_page(status, limit, offset))

    def list(
        self, status: str | State | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every job (newest first), fetched `page_size` at a time.

        A job submitted while the pages are read shifts the offsets; it is not yielded twice.
        """
        seen: set[str] = set()
        offset = 0
        while True:
            page = self.list_page(status, page_size, offset)
            for row in page.jobs:
                if row.job_id not in seen:
                    seen.add(row.job_id)
                    yield row.model_dump(mode="json", exclude_unset=True)  # the API's own row
            if len(page.jobs) < page_size:
                return
            offset += len(page.jobs)

    def logs(self, job_id: str) -> str:
        """The job's captured stdout/stderr."""
        return self._call(core.logs(job_id))

    # -- catalogue -----------------------------------------------------------------------------
    def models(self) -> builtins.list[dict[str, Any]]:
        """Trained models."""
        return self._call(core.catalog("/models", "models"))

    def queues(self) -> builtins.list[dict[str, Any]]:
        """Queues with their depth and the live workers serving them."""
        return self._call(core.catalog("/queues", "queues"))

    def workers(self) -> builtins.list[dict[str, Any]]:
        """Live workers."""
        return self._call(core.catalog("/workers", "workers"))

    def health(self) -> dict[str, Any]:
        """GET /health."""
        return self._call(core.health())
