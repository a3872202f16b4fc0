"""The training child: one process (and process group) per training job.

Run as ``python -m aijobs.worker.child SPEC.json``. Reports progress on the file descriptor
named by AIJOBS_PROGRESS_FD, writes its outcome or its error beside the spec, and exits 0 on
success, 2 on a user-facing failure, 1 on a crash (see worker.protocol). Its stdout/stderr are
the job's log.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aijobs import datapaths, errors
from aijobs.runtimes.base import load_runtime
from aijobs.worker.protocol import (
    EXIT_CRASH,
    EXIT_JOB_FAILURE,
    EXIT_OK,
    ProgressReport,
    TrainingError,
    TrainingOutcome,
    TrainingSpec,
    die_with_parent,
)


@dataclass
class ChildContext:
    """The TrainContext a runtime sees."""

    job_id: str
    attempt: int
    model_dir: Path
    checkpoint_dir: Path
    data_roots: list[Path]
    device: str
    channel: IO[str] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def report(
        self, fraction: float, metrics: dict[str, Any] | None = None, *, epoch: int | None = None
    ) -> None:
        message = ProgressReport(min(max(float(fraction), 0.0), 1.0), metrics)
        if epoch is not None:
            self.history.append({"epoch": epoch, **(metrics or {})})
            message.history = self.history
        if self.channel is not None:
            self.channel.write(message.to_line())
            self.channel.flush()


def train(spec: TrainingSpec, channel: IO[str] | None) -> TrainingOutcome:
    payload = spec.payload
    runtime_name, model_type = spec.runtime, payload["model_type"]
    runtime = load_runtime(runtime_name)
    if runtime is None:
        raise errors.JobFailure(f"runtime {runtime_name!r} is not installed in this worker")
    if problem := runtime.missing():
        raise errors.JobFailure(problem)
    if model_type not in runtime.model_types:
        raise errors.JobFailure(
            f"this worker's {runtime_name} runtime cannot train model_type {model_type!r}; "
            f"it can train: {', '.join(sorted(runtime.model_types))}"
        )
    roots = [Path(r) for r in spec.data_roots]
    try:
        data_path = datapaths.resolve_data_path(payload["data_path"], roots)
    except errors.InvalidDataPath as exc:
        raise errors.JobFailure(exc.detail) from exc
    ctx = ChildContext(
        job_id=spec.job_id,
        attempt=spec.attempt,
        model_dir=Path(spec.model_dir),
        checkpoint_dir=Path(spec.checkpoint_dir),
        data_roots=roots,
        device=spec.device,
        channel=channel,
    )
    ctx.model_dir.mkdir(parents=True, exist_ok=True)
    ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"training {model_type} on {data_path} ({runtime.framework} {runtime.framework_version()})"
    )
    started = time.perf_counter()
    outcome = runtime.train(model_type, data_path, payload.get("hyperparameters") or {}, ctx)
    elapsed = round(time.perf_counter() - started, 3)
    print(f"done in {elapsed}s: {outcome.metrics}")
    return TrainingOutcome(
        metrics={**outcome.metrics, "training_time": elapsed},
        info=outcome.info,
        framework=runtime.framework,
        framework_version=runtime.framework_version(),
    )


def main(argv: list[str]) -> int:
    die_with_parent()
    spec_path = Path(argv[1])
    spec = TrainingSpec.read(spec_path)
    fd = os.environ.get("AIJOBS_PROGRESS_FD")
    channel = os.fdopen(int(fd), "w") if fd else None
    try:
        train(spec, channel).write(spec_path)
        return EXIT_OK
    except errors.JobFailure as exc:
        print(f"job failed: {exc.detail}", file=sys.stderr)
        TrainingError(exc.detail).write(spec_path)
        return EXIT_JOB_FAILURE
    except Exception as exc:
        traceback.print_exc()
        TrainingError(f"{type(exc).__name__}: {exc}").write(spec_path)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main(sys.argv))
