"""The worker's end of the inference child's pipe, with real child processes."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aijobs.worker.protocol import REPLY_READ_LIMIT, SKIPPED, InferenceRequest
from aijobs.worker.supervisor import InferenceProcess, UnreadableReply

# A child that answers its first request with a line longer than the worker reads, then hangs.
FLOODS_THE_PIPE = f"""
import sys, time
sys.stdin.readline()
sys.stdout.write("x" * {REPLY_READ_LIMIT + 1024} + "\\n")
sys.stdout.flush()
time.sleep(600)
"""

REQUEST = InferenceRequest("echo", "/nowhere", None, "hello", {}, [])


async def test_an_unreadable_answer_fails_its_request_and_restarts_the_child(
    tmp_path: Path,
) -> None:
    child = InferenceProcess(tmp_path / "inference.log", 1, (sys.executable, "-c", FLOODS_THE_PIPE))
    await child.start()
    first_pid = child.pid
    first, behind = await child.send([REQUEST, REQUEST])
    with pytest.raises(UnreadableReply, match="cannot read"):
        await first
    with pytest.raises(ConnectionError):
        await behind  # it never ran: sent again by the caller
    assert child.proc is not None
    assert child.proc.returncode is not None  # killed, not left hanging
    (last,) = await child.send([REQUEST])
    assert child.pid not in (None, first_pid)  # a new child for the next request
    await child.kill()
    with pytest.raises(ConnectionError):
        await last


async def test_a_request_skipped_before_it_starts_is_answered_without_running(
    tmp_path: Path,
) -> None:
    child = InferenceProcess(tmp_path / "inference.log", 1)
    echo = InferenceRequest("tests.echo_runtime:EchoRuntime", str(tmp_path), None, "", {}, [])
    slow, skipped, after = await child.send(
        [replace(echo, input_data="sleep:1"), replace(echo, input_data="exit"), echo]
    )
    child.skip(skipped)  # it would kill the child if it ran
    assert (await slow).ok
    assert (await skipped).error == SKIPPED
    assert (await after).ok
    await child.kill()
