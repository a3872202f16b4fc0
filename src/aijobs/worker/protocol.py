"""What a worker and its children say to each other, typed the same on both sides of the pipe.

Training: the worker writes a `TrainingSpec` beside the job's log and starts the child on it; the
child sends `ProgressReport` lines on its progress channel, writes a `TrainingOutcome` (or a
`TrainingError`) beside the spec and exits with one of the EXIT_ codes.

Inference: the worker writes `InferenceRequest` lines to the long-lived child's stdin, each with
a number; the child answers each with an `InferenceReply` line carrying that number, in order.
A `skip_line` tells it to answer a request it has not started yet without running it (the job
was cancelled or its lease lost).
These run thousands of times a second, so they are plain dataclasses read and written by hand.

Both children call `die_with_parent` first: a worker killed with SIGKILL takes them along.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_CRASH, EXIT_JOB_FAILURE = 0, 1, 2
# The largest inference answer the child sends: a bigger one fails its job in words instead.
MAX_REPLY_BYTES = 16 * 2**20
# What the worker reads of one line at most: any answer the child may send, with room to spare.
REPLY_READ_LIMIT = 2 * MAX_REPLY_BYTES
RESULT_FILE = "result.json"  # a TrainingOutcome, beside the spec
ERROR_FILE = "error.json"  # a TrainingError, beside the spec
PARENT_PID_ENV = "AIJOBS_WORKER_PID"  # set by the worker for its children
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a worker's child, first thing: be killed when the worker dies, so no job runs on
    without it. Asked here, not between fork and exec (preexec_fn): running Python there, in a
    copy of a process with threads, can deadlock on a lock another thread held at the fork,
    and the worker, waiting in the event loop for the exec, would freeze with it."""
    parent = os.environ.get(PARENT_PID_ENV)
    if parent is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # the worker died before we asked: nobody would stop us
        os._exit(EXIT_CRASH)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def _object(text: str | bytes) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


@dataclass(slots=True)
class TrainingSpec:
    """One attempt of a training job, as the child runs it."""

    job_id: str
    attempt: int
    payload: dict[str, Any]
    runtime: str
    model_dir: str
    checkpoint_dir: str
    data_roots: list[str]
    device: str  # "cuda" or "cpu"

    def write(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "job_id": self.job_id,
                    "attempt": self.attempt,
                    "payload": self.payload,
                    "runtime": self.runtime,
                    "model_dir": self.model_dir,
                    "checkpoint_dir": self.checkpoint_dir,
                    "data_roots": self.data_roots,
                    "device": self.device,
                }
            )
        )

    @classmethod
    def read(cls, path: Path) -> TrainingSpec:
        return cls(**_object(path.read_text()))


@dataclass(slots=True)
class ProgressReport:
    """A line on the training child's progress channel."""

    fraction: float | None = None
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None

    def to_line(self) -> str:
        message: dict[str, Any] = {"fraction": self.fraction}
        if self.metrics is not None:
            message["metrics"] = self.metrics
        if self.history is not None:
            message["history"] = self.history
        return json.dumps(message, default=str) + "\n"

    @classmethod
    def from_line(cls, line: bytes) -> ProgressReport:
        """Raises ValueError on a line that is not a report."""
        data = _object(line)
        return cls(data.get("fraction"), data.get("metrics"), data.get("history"))


@dataclass(slots=True)
class TrainingOutcome:
    """What a training child that succeeded leaves for the worker to publish."""

    metrics: dict[str, Any]
    info: dict[str, Any]
    framework: str
    framework_version: str | None

    def write(self, spec_path: Path) -> None:
        _write_json(
            spec_path.with_name(RESULT_FILE),
            {
                "metrics": self.metrics,
                "info": self.info,
                "framework": self.framework,
                "framework_version": self.framework_version,
            },
        )

    @classmethod
    def read(cls, attempt_dir: Path) -> TrainingOutcome:
        return cls(**_object((attempt_dir / RESULT_FILE).read_text()))


@dataclass(slots=True)
class TrainingError:
    """Why a training child failed, in words for the job's owner."""

    error: str

    def write(self, spec_path: Path) -> None:
        _write_json(spec_path.with_name(ERROR_FILE), {"error": self.error})

    @classmethod
    def read(cls, attempt_dir: Path) -> TrainingError:
        """Raises OSError or ValueError when the child left none (it was killed, or crashed
        before it could write one)."""
        try:
            return cls(str(_object((attempt_dir / ERROR_FILE).read_text())["error"]))
        except KeyError as exc:
            raise ValueError(f"{ERROR_FILE} has no error") from exc


@dataclass(slots=True)
class InferenceRequest:
    """One inference job, sent to the inference child."""

    runtime: str
    model_dir: str
    sha256: str | None
    input_data: Any
    parameters: dict[str, Any]
    data_roots: list[str]

    def to_line(self, number: int) -> str:
        return (
            json.dumps(
                {
                    "id": number,
                    "runtime": self.runtime,
                    "model_dir": self.model_dir,
                    "sha256": self.sha256,
                    "input_data": self.input_data,
                    "parameters": self.parameters,
                    "data_roots": self.data_roots,
                }
            )
            + "\n"
        )

    @classmethod
    def from_line(cls, line: bytes) -> tuple[int | None, InferenceRequest]:
        """The request's number and the request; ValueError on a line that is not one (the
        worker writes every line with `to_line`, so only a bug sends such a line)."""
        data = _object(line)
        try:
            request = cls(
                runtime=data["runtime"],
                model_dir=data["model_dir"],
                sha256=data.get("sha256"),
                input_data=data["input_data"],
                parameters=data.get("parameters") or {},
                data_roots=data["data_roots"],
            )
        except KeyError as exc:
            raise ValueError(f"inference request without {exc}") from exc
        return data.get("id"), request


SKIP_PREFIX = b'{"skip": '
SKIPPED = "skipped: the job was stopped before it started"


def skip_line(number: int) -> bytes:
    """Tells the inference child not to run request `number` if it has not started it."""
    return SKIP_PREFIX + str(number).encode() + b"}\n"


def skipped_number(line: bytes) -> int | None:
    """The request a skip line names; None for any other line."""
    if not line.startswith(SKIP_PREFIX):
        return None
    return int(_object(line)["skip"])


@dataclass(slots=True)
class InferenceReply:
    """The inference child's answer to one request: `output` when ok, else `error`."""

    id: int | None
    ok: bool
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    elapsed_ms: float = 0.0  # the round trip, measured by the worker (not sent)

    def to_line(self) -> bytes:
        """The reply as the child sends it; an answer over MAX_REPLY_BYTES becomes an error
        that says so (the job fails on its own, the worker's pipe stays readable)."""
        reply: dict[str, Any] = {"id": self.id, "ok": self.ok}
        if self.ok:
            reply["output"] = self.output
        else:
            reply["error"] = self.error
        line = (json.dumps(reply, default=str) + "\n").encode()
        if len(line) <= MAX_REPLY_BYTES:
            return line
        what = "answer" if self.ok else "error"
        error = (
            f"the inference {what} is {len(line) / 2**20:.1f} MiB, over the limit of"
            f" {MAX_REPLY_BYTES / 2**20:g} MiB for one job: send fewer inputs per job"
        )
        return InferenceReply(self.id, ok=False, error=error).to_line()

    @classmethod
    def from_line(cls, line: bytes) -> InferenceReply:
        data = _object(line)
        return cls(
            id=data.get("id"),
            ok=bool(data.get("ok")),
            output=data.get("output") or {},
            error=data.get("error"),
        )
