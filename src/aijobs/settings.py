"""One Settings object (environment variables prefixed ``AIJOBS_``), built once and passed down."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIJOBS_", extra="ignore")

    home: Path = Field(Path("./var"), description="State directory: store, models, job logs.")
    store_url: str = Field(
        "",
        description="Job store URL: sqlite:///PATH, redis://HOST:PORT/DB, rediss://... or "
        "unix:///PATH?db=N; empty means the SQLite file aijobs.db in home.",
    )
    data_roots: str = Field(
        "./data",
        description="Data roots, separated by ':' as in PATH; every data path must lie in one.",
    )
    host: str = Field("127.0.0.1", description="Where `aijobs serve` and `aijobs up` listen.")
    port: int = Field(8000, description="The API's port (`aijobs serve`, `aijobs up`).")
    lease_seconds: float = Field(
        30.0, gt=0, description="How long a claim lasts without renewal; renewed every third of it."
    )
    max_attempts: int = Field(
        3, ge=1, description="Runs a job may start (rescues and retries count) before it fails."
    )
    job_timeout_seconds: float = Field(
        3600.0, gt=0, description="Default job time limit, when a job sets no timeout_seconds."
    )
    kill_grace_seconds: float = Field(
        5.0, ge=0, description="SIGTERM to SIGKILL delay when a job's child is stopped."
    )
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="How long a stopping worker lets its running jobs finish."
    )
    worker_ttl_seconds: float = Field(
        15.0, gt=0, description="A worker not seen for this long counts as gone."
    )
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest accepted request body (413 above)."
    )
    inference_cache_size: int = Field(8, ge=1, description="Models kept loaded per worker.")
    inference_prefetch: int = Field(
        16,
        ge=0,
        description="Inference jobs a worker holds beyond its training slots (claimed and "
        "pipelined together).",
    )
    allow_missing_gpu: bool = Field(False, description="Let GPU queues run without CUDA (tests).")
    allow_downloads: bool = Field(
        True,
        description="Let training jobs fetch a `pretrained_model` named by its Hugging Face Hub "
        "id into the standard cache (HF_HOME); false (or HF_HUB_OFFLINE=1) keeps workers off the "
        "network, with only the cache and the data roots to start from.",
    )
    queue_python: str = Field(
        "",
        description="Interpreter per queue for `aijobs up`, 'queue=/path/to/python,...': a "
        "queue whose framework lives in another environment (CUDA builds of torch and TF).",
    )
    # Redis store (AIJOBS_STORE_URL=redis://, rediss:// or unix://)
    redis_prefix: str = Field(
        "aijobs",
        min_length=1,
        pattern=r"^[^{}]+$",
        description="Key prefix (and Cluster hash tag): deployments sharing a Redis differ here.",
    )
    redis_pool_size: int = Field(50, ge=2, description="Connections per process to Redis.")
    redis_socket_timeout: float = Field(5.0, gt=0, description="Redis read/write timeout (s).")
    redis_connect_timeout: float = Field(2.0, gt=0, description="Redis connect timeout (s).")
    redis_retain_jobs: int = Field(
        100_000, ge=0, description="Finished jobs kept in Redis, newest first (0: no limit)."
    )
    redis_retain_seconds: float = Field(
        30 * 86400.0, ge=0, description="How long finished jobs are kept in Redis (0: no limit)."
    )

    @cached_property
    def roots(self) -> list[Path]:
        return [Path(p).resolve() for p in self.data_roots.split(os.pathsep) if p]

    @property
    def queue_pythons(self) -> dict[str, Path]:
        """AIJOBS_QUEUE_PYTHON parsed and checked; ValueError saying what is wrong."""
        return parse_queue_python(self.queue_python)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{(self.home / 'aijobs.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        return (self.home / "models").resolve()

    @property
    def jobs_dir(self) -> Path:
        return (self.home / "jobs").resolve()


def parse_queue_python(value: str) -> dict[str, Path]:
    """'tensorflow=/opt/tf/bin/python,pytorch-2.1-gpu=/opt/torch/bin/python' -> {queue: path}.

    Every queue must be known and every interpreter an executable file; a ValueError names each
    bad entry.
    """
    from aijobs import routing  # here: settings is imported by everything, routing by less

    out: dict[str, Path] = {}
    problems: list[str] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        queue, sep, python = (part.strip() for part in entry.partition("="))
        if not sep or not queue or not python:
            problems.append(f"{entry!r} is not queue=/path/to/python")
        elif queue not in routing.QUEUES:
            problems.append(f"unknown queue {queue!r} (queues: {', '.join(routing.QUEUES)})")
        elif queue in out:
            problems.append(f"queue {queue!r} is given twice")
        else:
            path = Path(python).expanduser()
            if not path.is_file() or not os.access(path, os.X_OK):
                problems.append(f"interpreter for {queue!r}, {python!r}, is not an executable file")
            else:
                out[queue] = path.absolute()
    if problems:
        raise ValueError("; ".join(problems))
    return out


_TYPE_NAMES: dict[object, str] = {
    Path: "path",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}
_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "length ≥"))


def _default_text(value: object) -> str:
    if isinstance(value, Path):
        return str(value) if value.is_absolute() else f"./{value}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _rules_text(metadata: list[object]) -> str:
    rules = [
        f"{sign} {getattr(rule, name)}"
        for rule in metadata
        for name, sign in _BOUNDS
        if getattr(rule, name, None) is not None
    ]
    rules += [f"matches `{p}`" for rule in metadata if (p := getattr(rule, "pattern", None))]
    return ", ".join(rules)


def settings_markdown() -> str:
    """docs/settings.md: every AIJOBS_* variable of Settings with its type, default and meaning.

    The page is generated from the fields themselves (scripts/settings_docs.py writes it; a unit
    test fails when the file and the fields drift apart), so the descriptions above are the docs.
    """
    prefix = Settings.model_config.get("env_prefix", "")
    rows = [
        "| Variable | Type | Default | Allowed | Meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = _default_text(field.default)
        cells = (
            f"`{prefix}{name.upper()}`",
            _TYPE_NAMES.get(field.annotation, str(field.annotation)),
            f"`{default}`" if default else "empty",
            _rules_text(field.metadata),
            field.description or "",
        )
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(
        [
            "# Settings",
            "",
            "<!-- Generated from aijobs.settings.Settings by `.venv/bin/python "
            "scripts/settings_docs.py`; edit the fields' descriptions, not this file. -->",
            "",
            "Every process (`aijobs serve`, `aijobs worker`, `aijobs up`) reads these environment "
            "variables once at start; a value outside what is allowed stops it there. Booleans "
            "take `true`/`false` (also `1`/`0`, `yes`/`no`).",
            "",
            *rows,
            "",
            "The clients read `AIJOBS_URL` (the API's address, default `http://localhost:8000`): "
            "see [clients.md](clients.md).",
            "",
        ]
    )
