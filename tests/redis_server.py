"""A real redis-server for the tests: our own process, on a free port, in a temporary directory.

The contract and integration suites share one server per test session (`redis_server`), each
test under its own key prefix; tests that stop or restart Redis start their own (`RedisServer`).
Without a redis-server binary the Redis tests skip, except under CI (env CI set), where a missing
Redis is a failure: CI must never pass by skipping the Redis backend.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARY_ENV = "AIJOBS_TEST_REDIS_SERVER"  # another redis-server binary, if wanted


def redis_binary() -> str | None:
    return os.environ.get(BINARY_ENV) or shutil.which("redis-server")


def require_redis() -> str:
    """The redis-server binary, or skip (fail under CI) with the reason."""
    binary = redis_binary()
    if binary is None:
        reason = (
            "redis-server is not installed (apt-get install redis-server, or set "
            f"{BINARY_ENV}); the Redis store tests need it"
        )
        if os.environ.get("CI"):
            pytest.fail(reason + " — CI must run them", pytrace=False)
        pytest.skip(reason)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process with AOF on (appendfsync always), restartable on the same data."""

    directory: Path
    port: int = field(default_factory=_free_port)
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        binary = require_redis()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the server owns it
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def ping(self) -> bool:
        """True once the server answers PONG (not LOADING: it is serving)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown; SIGKILL: a crash (AOF replays on the next start)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, sig: int = signal.SIGKILL, down_for: float = 0.0) -> None:
        self.stop(sig)
        time.sleep(down_for)
        self.start()

    def command(self, *args: str) -> bytes:
        """One command by raw RESP, for tests that must not depend on a client library."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload)
            return s.recv(65536)


_shared: RedisServer | None = None


def shared_server() -> RedisServer:
    """The session's shared server, started on first use (skips/fails without redis-server)."""
    global _shared
    require_redis()
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="aijobs-redis-")))
        server.start()
        atexit.register(_stop_shared, server)
        _shared = server
    return _shared


def _stop_shared(server: RedisServer) -> None:
    with contextlib.suppress(Exception):
        server.stop(signal.SIGKILL)
    shutil.rmtree(server.directory, ignore_errors=True)


def prefix_for(location: Path | str) -> str:
    """A key prefix of its own for each test location: tests never see each other's keys."""
    return "t" + hashlib.sha1(str(location).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """The shared redis-server of this test session."""
    return shared_server()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone (for tests that stop, kill or restart it)."""
    require_redis()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)
