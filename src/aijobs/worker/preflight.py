"""What a worker checks before it serves a queue: known queue, framework installed, GPU present."""

from __future__ import annotations

import os
import shutil
import subprocess

from aijobs import routing
from aijobs.runtimes.base import Runtime, discover, load_runtime


def gpu_count() -> int:
    """GPUs the NVIDIA driver reports on this machine (0 without a driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def gpu_devices() -> list[str]:
    """The GPUs this worker may hand out, one per job: CUDA_VISIBLE_DEVICES, else all of them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(gpu_count())]


def problems(
    queues: list[str],
    allow_missing_gpu: bool,
    runtimes: dict[str, Runtime] | None = None,
    runtime_override: str | None = None,
) -> list[str]:
    """Why this environment cannot serve `queues` (empty when it can)."""
    runtimes = discover() if runtimes is None else runtimes
    found: list[str] = []
    if runtime_override is not None:
        found += _override_problems(runtime_override, runtimes)
    gpus: int | None = None
    for name in queues:
        queue = routing.QUEUES.get(name)
        if queue is None:
            found.append(f"unknown queue {name!r}; queues: {', '.join(routing.QUEUES)}")
            continue
        if runtime_override is None:  # else the override serves every queue; checked once above
            found += _runtime_problems(name, queue, runtimes)
        if queue.gpu and not allow_missing_gpu:
            gpus = gpu_count() if gpus is None else gpus
            if gpus == 0:
                found.append(
                    f"queue {name!r} needs a GPU and this machine has none "
                    "(AIJOBS_ALLOW_MISSING_GPU=1 runs it on the CPU, for tests only)"
                )
    return found


def _override_problems(runtime_override: str, runtimes: dict[str, Runtime]) -> list[str]:
    override = load_runtime(runtime_override, runtimes)
    if override is None:
        return [f"runtime {runtime_override!r} is neither installed nor importable"]
    if missing := override.missing():
        return [f"runtime {runtime_override!r}: {missing}"]
    return []


def _runtime_problems(name: str, queue: routing.Queue, runtimes: dict[str, Runtime]) -> list[str]:
    runtime = runtimes.get(queue.runtime)
    if runtime is None:
        return [
            f"queue {name!r} needs the {queue.runtime} runtime, which is not installed here "
            f"(pip install 'aijobs[{queue.runtime}]')"
        ]
    if missing := runtime.missing():
        return [f"queue {name!r}: {missing}"]
    return []


def servable(allow_missing_gpu: bool) -> list[str]:
    """Every queue this environment can serve."""
    runtimes = discover()
    return [q for q in routing.QUEUES if not problems([q], allow_missing_gpu, runtimes)]
