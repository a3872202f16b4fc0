"""A runtime plugin that does nothing: the queue's own cost, measured through the real worker path.

Served by `aijobs worker --queue sklearn --runtime noop_runtime:NoopRuntime` with `bench/` on
PYTHONPATH (bench/peers/aijobs_bench.py does this). Training writes one small file, so a model
record exists; inference echoes its input back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aijobs.runtimes.base import TrainContext, TrainResult


class NoopRuntime:
    name = "noop"
    framework = "noop"
    model_types = frozenset({"noop"})

    def missing(self) -> str | None:
        return None

    def framework_version(self) -> str:
        return "0"

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        (ctx.model_dir / "noop.json").write_text("{}")
        return TrainResult(metrics={})

    def load(self, model_dir: Path) -> Any:
        return None

    def predict(
        self, model: Any, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
    ) -> dict[str, Any]:
        return {"output": input_data}
