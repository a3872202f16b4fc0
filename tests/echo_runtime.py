"""A runtime for worker tests, served with `aijobs worker --runtime tests.echo_runtime:EchoRuntime`.

Training runs `hyperparameters.epochs` epochs of `epoch_seconds` each first, printing
`lines_per_epoch` lines and reporting each epoch (a job with a log and a history), sleeps
`hyperparameters.sleep` seconds, then writes `weights_mib` MiB of weights one MiB
at a time, `write_pause` seconds apart (a save a test can kill midway). Inference echoes its
input; `sleep:S` takes S seconds first, `big:N` answers N characters, `exit` kills the inference
process and a parameter `fail` fails the job with that text, so tests can drive the worker's
batch, timeout, crash and error paths with real processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aijobs import errors
from aijobs.runtimes.base import TrainContext, TrainResult


class EchoRuntime:
    name = "echo"
    framework = "echo"
    model_types = frozenset({"echo"})

    def missing(self) -> str | None:
        return None

    def framework_version(self) -> str:
        return "1"

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        epochs = int(hyperparameters.get("epochs", 0))
        for epoch in range(1, epochs + 1):
            for line in range(int(hyperparameters.get("lines_per_epoch", 0))):
                print(f"epoch {epoch} line {line} ✓", flush=True)  # noqa: T201 - its log
            time.sleep(float(hyperparameters.get("epoch_seconds", 0)))
            ctx.report(epoch / epochs, {"loss": 1 / epoch}, epoch=epoch)
        time.sleep(float(hyperparameters.get("sleep", 0)))
        with (ctx.model_dir / "weights.bin").open("wb") as weights:
            for _ in range(int(hyperparameters.get("weights_mib", 0))):
                weights.write(b"w" * (1 << 20))
                weights.flush()
                time.sleep(float(hyperparameters.get("write_pause", 0)))
        (ctx.model_dir / "echo.json").write_text("{}")
        return TrainResult(metrics={})

    def load(self, model_dir: Path) -> Any:
        return str(model_dir)

    def predict(
        self, model: Any, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
    ) -> dict[str, Any]:
        if input_data.startswith("sleep:"):
            time.sleep(float(input_data.removeprefix("sleep:")))
        elif input_data.startswith("big:"):
            return {"echo": "x" * int(input_data.removeprefix("big:"))}
        elif input_data == "exit":
            os._exit(3)
        if "fail" in parameters:
            raise errors.JobFailure(f"echo failed: {parameters['fail']}")
        return {"echo": input_data, "pid": os.getpid()}
