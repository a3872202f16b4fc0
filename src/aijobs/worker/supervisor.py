"""Child processes of a worker: spawn in their own process group, watch, and kill for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aijobs.worker.protocol import (
    PARENT_PID_ENV,
    REPLY_READ_LIMIT,
    InferenceReply,
    InferenceRequest,
    ProgressReport,
    skip_line,
)
from aijobs.worker.running import log

INFERENCE_COMMAND = (sys.executable, "-m", "aijobs.worker.inference_server")

# Requests sent to the inference child and not answered yet: number -> (reply, time sent).
Pending = dict[int, tuple[asyncio.Future[InferenceReply], float]]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env[PARENT_PID_ENV] = str(os.getpid())  # the child dies with us: die_with_parent
    return env | (extra or {})


async def kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after `grace` seconds."""
    if proc.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            break
        except TimeoutError:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren that outlived the leader


class TrainingProcess:
    """One training job's child process, its log file and its progress channel."""

    def __init__(
        self,
        spec_path: Path,
        log_path: Path,
        on_progress: Callable[[ProgressReport], None],
        gpu: str | None = None,
    ) -> None:
        self.spec_path = spec_path
        self.log_path = log_path
        self.on_progress = on_progress
        self.gpu = gpu  # the one device this job may see (CUDA_VISIBLE_DEVICES)
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        read_fd, write_fd = os.pipe()
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aijobs.worker.child",
                str(self.spec_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=child_env(
                    {"AIJOBS_PROGRESS_FD": str(write_fd)}
                    | ({"CUDA_VISIBLE_DEVICES": self.gpu} if self.gpu is not None else {})
                ),
                start_new_session=True,
            )
        os.close(write_fd)
        self._reader = asyncio.create_task(self._read_progress(read_fd))

    async def _read_progress(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**22)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb")
        )
        try:
            while line := await reader.readline():
                with contextlib.suppress(ValueError):
                    self.on_progress(ProgressReport.from_line(line))
        finally:
            transport.close()

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2.0)
        return code

    async def kill(self, grace: float) -> None:
        if self.proc is not None:
            await kill_group(self.proc, grace)


class NotRun(ConnectionError):
    """The inference child died (or was killed) before it reached this request."""


class UnreadableReply(Exception):
    """The inference child's answer to this request could not be read; the child was killed
    (and is started again for the next request), since its pipe can no longer be trusted."""


class InferenceProcess:
    """The long-lived inference child, restarted after a kill or crash.

    Requests are pipelined: a batch goes out in one write, and the child answers in order, one
    request after another, while the worker goes on claiming and finishing.
    """

    def __init__(
        self, log_path: Path, cache_size: int, command: Sequence[str] = INFERENCE_COMMAND
    ) -> None:
        self.log_path = log_path
        self.cache_size = cache_size
        self.command = command  # the child's command line (another one in tests)
        self.proc: asyncio.subprocess.Process | None = None
        self._starting = asyncio.Lock()
        self._pending: Pending = {}
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0

    async def start(self) -> None:
        await self._ensure()

    async def _ensure(self) -> asyncio.subprocess.Process:
        async with self._starting:
            if self.proc is None or self.proc.returncode is not None:
                with open(self.log_path, "ab") as log:
                    self.proc = await asyncio.create_subprocess_exec(
                        *self.command,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                        env=child_env({"AIJOBS_INFERENCE_CACHE_SIZE": str(self.cache_size)}),
                        start_new_session=True,
                        limit=REPLY_READ_LIMIT,
                    )
                self._pending = {}
                self._reader = asyncio.create_task(self._read_replies(self.proc, self._pending))
            return self.proc

    async def send(self, requests: list[InferenceRequest]) -> list[asyncio.Future[InferenceReply]]:
        """Send requests in one write; each future gets its reply (with the round trip's
        `elapsed_ms`), or ConnectionError if the child dies on it, NotRun if before it."""
        proc = await self._ensure()
        assert proc.stdin is not None
        loop = asyncio.get_running_loop()
        sent_at = time.perf_counter()
        replies: list[asyncio.Future[InferenceReply]] = []
        lines = []
        for request in requests:
            self._seq += 1
            reply = loop.create_future()
            self._pending[self._seq] = (reply, sent_at)
            replies.append(reply)
            lines.append(request.to_line(self._seq))
        if not proc.stdin.is_closing():
            proc.stdin.write("".join(lines).encode())  # a dead child: its reader fails them
        return replies

    def skip(self, reply: asyncio.Future[InferenceReply]) -> None:
        """Ask the child not to run the request `reply` waits for, if it has not started it:
        it then answers at once that it skipped it."""
        number = next((n for n, (r, _) in self._pending.items() if r is reply), None)
        stdin = self.proc.stdin if self.proc is not None else None
        if number is not None and stdin is not None and not stdin.is_closing():
            stdin.write(skip_line(number))

    def working_on(self) -> asyncio.Future[InferenceReply] | None:
        """The reply to the request the child is on now: it answers in order of sending."""
        for reply, _ in self._pending.values():
            return reply
        return None

    @staticmethod
    async def _read_replies(proc: asyncio.subprocess.Process, pending: Pending) -> None:
        assert proc.stdout is not None
        unreadable: UnreadableReply | None = None
        try:
            while line := await proc.stdout.readline():
                reply = InferenceReply.from_line(line)
                waiter, sent_at = pending.pop(reply.id if reply.id is not None else -1, (None, 0.0))
                if waiter is not None and not waiter.done():
                    reply.elapsed_ms = round((time.perf_counter() - sent_at) * 1000, 3)
                    waiter.set_result(reply)
        except Exception as exc:  # a line over the limit, or not a reply: the pipe is lost
            unreadable = UnreadableReply(
                f"the inference process sent an answer the worker cannot read"
                f" ({type(exc).__name__}: {exc}); the process was restarted"
            )
            log.error("inference process pid=%s killed: %s", proc.pid, unreadable)
            await kill_group(proc, grace=1.0)
        finally:
            exited = f"inference process exited with code {await proc.wait()}"
            # It answers in order: it died on the first unanswered request, never ran the rest.
            for n, (waiter, _) in enumerate(pending.values()):
                if not waiter.done():
                    first = unreadable or ConnectionError(exited)
                    waiter.set_exception(NotRun(exited) if n else first)

    async def kill(self, grace: float = 1.0) -> None:
        if self.proc is not None:
            await kill_group(self.proc, grace)
            self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None
