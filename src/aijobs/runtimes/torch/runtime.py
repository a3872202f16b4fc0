"""The PyTorch runtime: `bert` text classifiers, `transformer`/`gpt` language models, and
`resnet`/`vgg`/`alexnet` image classifiers, trained for real on CPU or CUDA.

Serves the pytorch-2.1-* and pytorch-2.0-* queues. This module stays light (the API and the
worker's supervisor import it for plugin discovery): torch, transformers and tokenizers are
imported by the family modules, which are imported inside the methods only.

- params: the hyperparameters each model type accepts, checked before anything heavy
- common: device, seeding, checkpoints (resume after a rescue); training: the training loop
- text (bert), lm (transformer, gpt), vision + vision_models (resnet, vgg, alexnet)
"""

from __future__ import annotations

import importlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from aijobs import errors
from aijobs.model_types import served_by
from aijobs.runtimes import params
from aijobs.runtimes.base import TrainContext, TrainResult, missing_packages
from aijobs.runtimes.torch import params as torch_params

META_FILE = "aijobs.json"
FAMILIES = {
    "bert": "text",
    "transformer": "lm",
    "gpt": "lm",
    "resnet": "vision",
    "vgg": "vision",
    "alexnet": "vision",
}
FAMILY_MODULES = {
    "text_classifier": "text",
    "language_model": "lm",
    "image_classifier": "vision",
}
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "PIL": "pillow",
}


def _family(module: str) -> Any:
    return importlib.import_module(f"aijobs.runtimes.torch.{module}")


class TorchRuntime:
    name = "pytorch"
    framework = "pytorch"
    model_types = served_by("pytorch")

    def missing(self) -> str | None:
        return missing_packages(REQUIRED, "PyTorch", "pytorch")

    def framework_version(self) -> str:
        return metadata.version("torch")

    def check_hyperparameters(
        self,
        model_type: str,
        hyperparameters: dict[str, Any],
        ceilings: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        if model_type not in FAMILIES:
            raise errors.JobFailure(
                f"the pytorch runtime cannot train {model_type!r}; it trains "
                + ", ".join(sorted(FAMILIES))
            )
        accepted, defaults = torch_params.spec_for(model_type)
        return params.validate(hyperparameters, accepted, defaults, ceilings=ceilings)

    def train(
        self, model_type: str, data_path: Path, hyperparameters: dict[str, Any], ctx: TrainContext
    ) -> TrainResult:
        self.check_hyperparameters(model_type, hyperparameters)  # fail before heavy imports
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
