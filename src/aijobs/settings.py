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
    store_url: str = Field("", description="Job store URL; empty means a SQLite file in home.")
    data_roots: str = Field("./data", description="Data roots, separated by ':' as in PATH.")
    host: str = "127.0.0.1"
    port: int = 8000
    lease_seconds: float = Field(30.0, gt=0, description="How long a claim lasts without renewal.")
    max_attempts: int = Field(3, ge=1, description="Runs a job may start before it is failed.")
    job_timeout_seconds: float = Field(3600.0, gt=0, description="Default job time limit.")
    kill_grace_seconds: float = Field(5.0, ge=0, description="SIGTERM to SIGKILL delay.")
    shutdown_grace_seconds: float = Field(30.0, ge=0, description="Worker SIGTERM grace period.")
    worker_ttl_seconds: float = Field(15.0, gt=0, description="A worker silent this long is dead.")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest accepted request body.")
    inference_cache_size: int = Field(8, ge=1, description="Models kept loaded per worker.")
    inference_prefetch: int = Field(
        16, ge=0, description="Inference jobs a worker holds beyond its training slots."
    )
    allow_missing_gpu: bool = Field(False, description="Let GPU queues run without CUDA (tests).")
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
