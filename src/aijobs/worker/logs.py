"""A training job's log file, followed so that each lease renewal carries what the child wrote
since the last one (Progress.log): the store then has the log while the job runs."""

from __future__ import annotations

import codecs
from pathlib import Path

READ_BLOCK = 1 << 20  # bytes read at a time: a job that prints a lot is decoded in pieces
# How often the worker looks for new output between renewals: a job that prints is renewed
# (its output sent) about this often, one that does not every third of the lease.
LOG_CHECK_SECONDS = 1.0


class LogFollower:
    """The part of one job's log the store has not acknowledged yet.

    Offsets are characters of the job's whole log, every run of it: a run's output starts at
    the log_length its claim carried. What is read waits here until a renewal that carried it
    is answered (`sent`): a renewal that failed is sent again from the same offset, and the
    store appends only what it lacks. At most `keep` characters wait (the store keeps no more):
    past that the oldest are dropped, and the next chunk starts after a gap.
    """

    def __init__(self, path: Path, start: int, keep: int) -> None:
        self.path = path
        self.keep = keep
        self.read_bytes = 0  # of the file
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""  # read, not acknowledged by the store
        self.pending_at = start  # its offset in the job's log

    def grew(self) -> bool:
        """Whether the child wrote more since the last read."""
        try:
            return self.path.stat().st_size > self.read_bytes
        except OSError:
            return False

    def chunk(self, final: bool = False) -> tuple[str, int] | None:
        """The text to send (read up to the file's end now) and its offset; None when there is
        nothing new. `final`: the child has ended, so a character cut short ends the text."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.read_bytes)
                while block := f.read(READ_BLOCK):
                    self.read_bytes += len(block)
                    self._add(self.decoder.decode(block))
        except OSError:
            pass  # not created yet, or gone with its attempt directory: nothing new to send
        if final:
            self._add(self.decoder.decode(b"", final=True))
        return (self.pending, self.pending_at) if self.pending else None

    def _add(self, text: str) -> None:
        self.pending += text
        if len(self.pending) > self.keep:
            dropped = len(self.pending) - self.keep
            self.pending = self.pending[dropped:]
            self.pending_at += dropped

    def sent(self, text: str, at: int) -> None:
        """The store has the chunk `text` at `at`: it need not be sent again."""
        end = at + len(text)
        if end > self.pending_at:
            self.pending = self.pending[end - self.pending_at :]
            self.pending_at = end
