"""The inference child: a long-lived process that keeps recently used models loaded.

Run as ``python -m aijobs.worker.inference_server``. Reads one request per line on stdin and
answers one line each on its private copy of stdout (see worker.protocol); anything libraries
print goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import os
import select
import sys
import time
import traceback
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from aijobs import artifacts, errors
from aijobs.runtimes.base import Runtime, discover, load_runtime
from aijobs.worker.protocol import (
    SKIPPED,
    InferenceReply,
    InferenceRequest,
    die_with_parent,
    skipped_number,
)

READ_CHUNK = 1 << 20


class ModelCache:
    """Least-recently-used loaded models, keyed by model directory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.models: OrderedDict[str, Any] = OrderedDict()

    def get(self, runtime: Runtime, model_dir: str, sha256: str | None) -> tuple[Any, bool]:
        if model_dir in self.models:
            self.models.move_to_end(model_dir)
            return self.models[model_dir], True
        path = Path(model_dir)
        if not path.is_dir():
            raise errors.JobFailure(f"model files are missing at {model_dir}")
        if sha256:
            artifacts.verify(path, sha256)
        model = runtime.load(path)
        self.models[model_dir] = model
        while len(self.models) > self.size:
            self.models.popitem(last=False)
        return model, False


def handle(
    request: InferenceRequest, cache: ModelCache, runtimes: dict[str, Runtime]
) -> dict[str, Any]:
    runtime = runtimes.get(request.runtime)
    if runtime is None and (runtime := load_runtime(request.runtime, runtimes)) is not None:
        runtimes[request.runtime] = runtime
    if runtime is None:
        raise errors.JobFailure(f"runtime {request.runtime!r} is not installed in this worker")
    started = time.perf_counter()
    model, cached = cache.get(runtime, request.model_dir, request.sha256)
    loaded = time.perf_counter()
    output = runtime.predict(
        model, request.input_data, request.parameters, [Path(r) for r in request.data_roots]
    )
    done = time.perf_counter()
    return {
        **output,
        "cached_model": cached,
        "load_ms": round((loaded - started) * 1000, 3),
        "predict_ms": round((done - loaded) * 1000, 3),
    }


class Requests:
    """The requests the worker sent, in order, and the numbers of those it asked to skip.

    Requests arrive pipelined, so a skip arrives after the request it names: before each
    request runs, everything already sent is read, and the skips in it are taken into account.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queued: deque[bytes] = deque()
        self.skipped: set[int] = set()
        self.partial = b""
        self.open = True

    def next(self) -> bytes | None:
        """The next request line; None once the worker closed the pipe and all are answered."""
        while not self.queued and self.open:
            self._read(wait=True)
        if self.open:
            self._read(wait=False)
        return self.queued.popleft() if self.queued else None

    def _read(self, wait: bool) -> None:
        if not wait and not select.select([self.fd], [], [], 0)[0]:
            return
        chunk = os.read(self.fd, READ_CHUNK)
        self.open = bool(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            if (number := skipped_number(line)) is not None:
                self.skipped.add(number)
            elif line.strip():
                self.queued.append(line)


def answer(
    line: bytes, cache: ModelCache, runtimes: dict[str, Runtime], skipped: set[int]
) -> bytes:
    number, request = InferenceRequest.from_line(line)
    if number in skipped:
        skipped.discard(number)
        return InferenceReply(number, ok=False, error=SKIPPED).to_line()
    try:
        reply = InferenceReply(number, ok=True, output=handle(request, cache, runtimes))
    except errors.JobFailure as exc:
        reply = InferenceReply(number, ok=False, error=exc.detail)
    except Exception as exc:
        traceback.print_exc()
        reply = InferenceReply(number, ok=False, error=f"{type(exc).__name__}: {exc}")
    return reply.to_line()


def main() -> int:
    die_with_parent()
    protocol = open(os.dup(1), "wb")  # noqa: SIM115 - open for the life of the process
    os.dup2(2, 1)  # stray prints from libraries go to the log, not the protocol
    sys.stdout = sys.stderr
    cache = ModelCache(int(os.environ.get("AIJOBS_INFERENCE_CACHE_SIZE", "8")))
    runtimes = discover()
    requests = Requests(0)
    # Each answer is written before the next request runs: when a request kills this process,
    # the worker knows which one (the first unanswered) and that the ones behind it never ran.
    while (line := requests.next()) is not None:
        protocol.write(answer(line, cache, runtimes, requests.skipped))
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
