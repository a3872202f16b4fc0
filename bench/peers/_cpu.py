"""CPU time of a benchmark's processes over a window, read from /proc (standard library only).

Every adapter (the peers' and aijobs') charges the same processes to its end-to-end run: the
producer (the adapter's own process), the worker and every process below it (forked pool
workers, aijobs' inference child), and the redis-server. A process's time is user + system of
all its threads (/proc/<pid>/stat utime + stime), plus cutime + cstime, the time of children it
has reaped, so that a child that ends inside the window is not lost. The unit is the clock tick
(10 ms where CLK_TCK is 100): over a run of thousands of jobs that is a few microseconds per
job, per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds incl. reaped children), or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces or ')': split at the last ')'.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime (proc(5)).
    ticks = sum(int(f) for f in fields[11:15])
    return name, int(fields[1]), ticks * TICK_S


def process_tree(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[1], []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Each live process's CPU seconds so far."""
    return {pid: st[2] for pid in pids if (st := _stat(pid)) is not None}


def is_local_process(pid: int, name_prefix: str) -> bool:
    """Whether `pid` is a process here whose name starts with `name_prefix` (a pid that a server
    reports may be in another machine or PID namespace, and here be someone else's)."""
    st = _stat(pid)
    return st is not None and st[0].startswith(name_prefix)


@dataclass
class CpuWindow:
    """CPU seconds between start() and stop(): of `processes` alone, of `trees` with every
    process below each root (the producer is counted alone: the worker it started is below it).

    A process present at stop() but not at start() counts from zero (it was born in the window).
    """

    processes: dict[str, int]
    trees: dict[str, int]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)

    def _sample(self) -> dict[str, dict[int, float]]:
        alone = {name: cpu_seconds([pid]) for name, pid in self.processes.items()}
        return alone | {name: cpu_seconds(process_tree(pid)) for name, pid in self.trees.items()}

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds in the window, by name."""
        after = self._sample()
        return {
            name: sum(t - self._before[name].get(pid, 0.0) for pid, t in pids.items())
            for name, pids in after.items()
        }


def end_to_end_window(worker_pid: int, redis_pid: int) -> CpuWindow:
    """The processes an end-to-end run charges: this one (the producer), the worker's tree and
    the redis-server's (which must run here: its time is read from /proc)."""
    if not is_local_process(redis_pid, "redis-server"):
        raise SystemExit(
            f"the Redis server (pid {redis_pid} by its INFO) is not a redis-server process on "
            "this machine: its CPU time cannot be read; run the benchmark on a local Redis"
        )
    return CpuWindow({"producer": os.getpid()}, {"worker": worker_pid, "redis": redis_pid})


def per_job_ms(cpu: dict[str, float], jobs: int) -> dict[str, float]:
    """The JSON line's CPU figures: milliseconds per job, all processes and each part."""
    out = {"cpu_ms_per_job": round(sum(cpu.values()) * 1000 / jobs, 4)}
    for name, seconds in cpu.items():
        out[f"{name}_cpu_ms_per_job"] = round(seconds * 1000 / jobs, 4)
    return out
