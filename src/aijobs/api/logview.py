"""A job's log as the API serves it: the tail a store keeps, at absolute offsets, cut for a caller.

Offsets count the characters of everything the job wrote, every run of it, the part the store
dropped to keep the tail included (Job.log_length), so that an offset names the same character
for as long as the job exists. A caller who is not an admin reads the host's paths replaced
(auth.Caller.redact); so that no path is cut in two at a page's edge, where it would escape the
replacement, such a caller's pages begin and end at line ends while the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from aijobs.api.auth import Caller
from aijobs.jobs import Job, log_start, log_total


@dataclass(frozen=True)
class LogView:
    kept: str  # the text the store keeps
    start: int  # the offset of its first character
    total: int  # the length of the whole log: the offset after its last character
    complete: bool  # the job ended: its log does not grow any more

    @classmethod
    def of(cls, job: Job) -> LogView:
        return cls(job.log or "", log_start(job), log_total(job), job.terminal)

    def clamp(self, offset: int) -> int:
        """`offset` within the kept text (an offset before it: where it starts now)."""
        return min(max(offset, self.start), self.total)

    def cut(
        self, begin: int, end: int, who: Caller, *, align_begin: bool = True
    ) -> tuple[str, int, int]:
        """The text between two offsets as `who` may read it, and the offsets it spans. For a
        caller who is not an admin, a part of a line at either edge is left out (unless it is
        all there is); `align_begin` False: `begin` is where an earlier cut ended."""
        begin, end = self.clamp(begin), self.clamp(max(begin, end))
        if not who.admin:
            begin, end = self._lines(begin, end, align_begin)
        text = self.kept[begin - self.start : end - self.start]
        return who.redact(text) or "", begin, end

    def _lines(self, begin: int, end: int, align_begin: bool) -> tuple[int, int]:
        text, base = self.kept, self.start
        if align_begin and begin > base and text[begin - base - 1] != "\n":
            newline = text.find("\n", begin - base, end - base)
            if newline >= 0:
                begin = base + newline + 1
        if end > begin and not (end == self.total and self.complete):
            newline = text.rfind("\n", begin - base, end - base)
            if newline >= 0:
                end = base + newline + 1
        return begin, end
