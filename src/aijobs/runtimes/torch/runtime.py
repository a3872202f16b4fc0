"""The PyTorch runtime: `bert` text classifiers, `transformer`/`gpt` language models, and
`resnet`/`vgg`/`alexnet` image classifiers, trained for real on CPU or CUDA.

Serves the pytorch-2.1-* and pytorch-2.0-* queues. This module stays light (the API and the
worker's supervisor import it for plugin discovery): torch, transformers and tokenizers are
imported by the family modules, which are imported inside the methods only.

- torch_params: the hyperparameters each model type accepts, checked before anything heavy
- torch_common: device, seeding, split, checkpoints (resume after a rescue), the training loop
- torch_text (bert), torch_lm (transformer, gpt), torch_vision (resnet, vgg, alexnet)
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from aijobs import errors
from aijobs.runtimes import torch_params
from aijobs.runtimes.base import TrainContext, TrainResult

META_FILE = "aijobs.json"
FAMILIES = {
    "bert": "torch_text",
    "transformer": "torch_lm",
    "gpt": "torch_lm",
    "resnet": "torch_vision",
    "vgg": "torch_vision",
    "alexnet": "torch_vision",
}
FAMILY_MODULES = {
    "text_classifier": "torch_text",
    "language_model": "torch_lm",
    "image_classifier": "torch_vision",
}
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "PIL": "pillow",
}


def _family(module: str) -> Any:
    return importlib.import_module(f"aijobs.runtimes.{module}")


class TorchRuntime:
    name = "pytorch"
    framework = "pytorch"
    model_types = frozenset(FAMILIES)

    def missing(self) -> str | None:
        absent = [dist for mod, dist in REQUIRED.items() if importlib.util.find_spec(mod) is None]
        if absent:
            return (
                f"PyTorch runtime not installed (missing {', '.join(absent)}): "
                "pip install 'aijobs[pytorch]'"
            )
        return None

    def framework_version(self) -> str:
        return metadata.version("torch")

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        if model_type not in FAMILIES:
            raise errors.JobFailure(
                f"the pytorch runtime cannot train {model_type!r}; it trains "
                + ", ".join(sorted(FAMILIES))
            )
        accepted, defaults = torch_params.spec_for(model_type)
        torch_params.validate(hyperparameters, accepted, defaults)  # fail before heavy imports
        result: TrainResult = _family(FAMILIES[model_type]).train(
            model_type, data_path, hyperparameters, ctx
        )
        return result

    def load(self, model_dir: Path) -> Any:
        try:
            meta = json.loads((model_dir / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise errors.JobFailure(f"model metadata {META_FILE} is missing or unreadable") from exc
        family = meta.get("family") if isinstance(meta, dict) else None
        if family not in FAMILY_MODULES or meta.get("runtime") != "pytorch":
            raise errors.JobFailure(f"model metadata {META_FILE} is not from the pytorch runtime")
        return _family(FAMILY_MODULES[family]).load(model_dir, meta)

    def predict(
        self, model: Any, input_data: str, parameters: dict[str, Any], data_roots: list[Path]
    ) -> dict[str, Any]:
        family = getattr(model, "family", None)
        if family not in FAMILY_MODULES:
            raise errors.JobFailure("not a model loaded by the pytorch runtime")
        if not isinstance(parameters, dict):
            raise errors.JobFailure("parameters must be a JSON object")
        out: dict[str, Any] = _family(FAMILY_MODULES[family]).predict(
            model, input_data, parameters, data_roots
        )
        return out
