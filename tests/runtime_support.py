"""A recording TrainContext for runtime tests: a double of the interface, not of a component."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeContext:
    model_dir: Path
    checkpoint_dir: Path = Path("/nonexistent-checkpoints")
    job_id: str = "job_00000000-0000-4000-8000-000000000000"
    attempt: int = 1
    data_roots: list[Path] = field(default_factory=list)
    device: str = "cpu"
    reports: list[tuple[float, dict[str, Any] | None, int | None]] = field(default_factory=list)

    def report(
        self, fraction: float, metrics: dict[str, Any] | None = None, *, epoch: int | None = None
    ) -> None:
        self.reports.append((fraction, metrics, epoch))

    def epoch_reports(self) -> list[tuple[dict[str, Any], int]]:
        """The end-of-epoch reports: (metrics, epoch); each one must carry its metrics."""
        ends = [(m, e) for _, m, e in self.reports if e is not None]
        assert all(m is not None for m, _ in ends), ends
        return [(m or {}, e) for m, e in ends]


def ctx_for(tmp: Path, data: Path, checkpoint: Path | None = None, **kw: Any) -> FakeContext:
    """A context writing its model under `tmp`, with `data` as its only data root."""
    (tmp / "model").mkdir(parents=True)
    checkpoint = checkpoint or tmp / "checkpoint"
    checkpoint.mkdir(exist_ok=True)
    return FakeContext(model_dir=tmp / "model", checkpoint_dir=checkpoint, data_roots=[data], **kw)
