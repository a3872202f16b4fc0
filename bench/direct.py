"""The benchmarks' direct scripts: a training job run as a fresh Python process that calls its
runtime itself, with no queue, API or worker (what a user would otherwise run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def script_for(template: str, job: dict[str, Any], data: Path, out: Path, **extra: str) -> str:
    """`template` filled in for `job`: {repo}, {out}, {data}, {model_type}, {path}, {hp}."""
    return template.format(
        repo=str(REPO),
        out=str(out),
        data=str(data),
        model_type=job["model_type"],
        path=str(data / job["data_path"]),
        hp=job["hyperparameters"],
        **extra,
    )
