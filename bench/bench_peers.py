"""aijobs against the Python queues people use today, on the same machine and the same Redis.

    .venv/bin/python bench/bench_peers.py                       # 3 runs x 5,000 jobs x 300 trips
    .venv/bin/python bench/bench_peers.py --only huey,rq --runs 1 --jobs 1000 --round-trips 50

Peers: Huey (four settings: `-w 2 -k process` and one thread, each with and without
notify_result), Dramatiq, SAQ, arq, Celery, RQ; two baselines, a bare redis-py loop (one LPUSH /
BLMOVE / HSET per job) and aijobs' own Redis functions called from bare loops
(`aijobs_functions_bench.py`, two variants: `bare`, the floor under any Python around aijobs'
storage, and `api-child`, with what aijobs' design adds: a producer on asyncio as an API
process is, a child process hop per batch in the worker); aijobs itself
when `bench/peers/aijobs_bench.py` exists (these two run with the project's interpreter,
`.venv/bin/python`). --only takes queue names or a prefix before a
`-` (`huey` is all four). Each peer's adapter, `bench/peers/<name>_bench.py`,
runs in a separate benchmark venv that this script creates when it is missing or its
requirements changed (`bench/peers/.venv` from requirements.txt; arq in `bench/peers/.venv-arq`,
its redis-py pin conflicting with Celery's).

One redis-server of our own (free port, temporary directory, AOF on with `appendfsync everysec`,
no RDB snapshots) serves every run; the DB is flushed before each. Each adapter prints one JSON
line (see `bench/peers/_common.py` for the protocol and the method):

    {"queue", "version", "jobs", "enqueue_per_s", "drain_per_s", "e2e_per_s", "e2e_tail_ms",
     "cpu_ms_per_job", "producer_cpu_ms_per_job", "worker_cpu_ms_per_job",
     "redis_cpu_ms_per_job", "round_trips", "rtt_p50_ms", "rtt_p99_ms", "notes"}

The headline is end to end: one producer submitting one job at a time through the library's
ordinary call while one worker drains, from the first submit to the last completion, with the
CPU time per job of every process involved (producer, worker and its children, Redis).

Each of --runs runs every adapter once, the order reversed on every other run; each figure of
the table is the median of one column over the runs. For aijobs, the ratio to the best peer on
each column (end to end, drain: ours / the highest; CPU per job, round-trip p50: ours / the
lowest). The baselines are not peers: no ratio is taken to them. Raw runs and medians go to
bench/results/peers.json, the table, with the command, to bench/results/peers.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / "bench" / "peers"
RESULTS_DIR = REPO / "bench" / "results"
VENVS = {  # venv folder -> requirements file
    ".venv": "requirements.txt",
    ".venv-arq": "requirements-arq.txt",
}
PEERS: dict[str, tuple[str, str | None, str]] = {  # queue name in the table ->
    # (adapter file, venv folder, the adapter's --variant)
    "huey-w2-process": ("huey_bench.py", ".venv", "w2-process"),
    "huey-w2-process-notify": ("huey_bench.py", ".venv", "w2-process-notify"),
    "huey-w1-thread": ("huey_bench.py", ".venv", "w1-thread"),
    "huey-w1-thread-notify": ("huey_bench.py", ".venv", "w1-thread-notify"),
    "dramatiq": ("dramatiq_bench.py", ".venv", ""),
    "saq": ("saq_bench.py", ".venv", ""),
    "arq": ("arq_bench.py", ".venv-arq", ""),
    "celery": ("celery_bench.py", ".venv", ""),
    "rq": ("rq_bench.py", ".venv", ""),
    "redis-py": ("redispy_bench.py", ".venv", ""),
    # aijobs' Redis functions from bare loops: run with the project's interpreter (venv None)
    "aijobs-functions-bare": ("aijobs_functions_bench.py", None, "bare"),
    "aijobs-functions-api-child": ("aijobs_functions_bench.py", None, "api-child"),
}
BASELINE = "redis-py"
# In the table, but not peers: no ratio is taken to them.
BASELINES = (BASELINE, "aijobs-functions-bare", "aijobs-functions-api-child")
OURS = "aijobs"
OURS_ADAPTER = PEERS_DIR / "aijobs_bench.py"
FIGURES = (  # the numbers of the JSON line, each reported as a median over the runs
    "e2e_per_s",
    "cpu_ms_per_job",
    "redis_cpu_ms_per_job",
    "producer_cpu_ms_per_job",
    "worker_cpu_ms_per_job",
    "e2e_tail_ms",
    "drain_per_s",
    "enqueue_per_s",
    "rtt_p50_ms",
    "rtt_p99_ms",
)
KEYS = ("queue", "version", "jobs", "round_trips", "notes", *FIGURES)
# The columns aijobs is compared on: figure -> (label, whether higher is better)
COMPARED = {
    "e2e_per_s": ("end to end", True),
    "cpu_ms_per_job": ("CPU per job", False),
    "rtt_p50_ms": ("round-trip p50", False),
    "drain_per_s": ("drain", True),
}
RUN_TIMEOUT_S = 1800
TIMES, DASH = "\u00d7", "\u2013"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the benchmark venvs -----------------------------------------------------------------------


def ensure_venv(folder: str, requirements: str) -> Path:
    venv = PEERS_DIR / folder
    python = venv / "bin" / "python"
    req = PEERS_DIR / requirements
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    stamp = venv / ".bench-requirements"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    log(f"creating {venv.relative_to(REPO)} from {req.relative_to(REPO)} ...")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            "-r",
            str(req),
        ],
        check=True,
    )
    stamp.write_text(digest)
    return python


def project_python() -> str:
    """The interpreter for aijobs's adapter: the project venv's (this one when it is that)."""
    venv_python = REPO / ".venv" / "bin" / "python"
    if Path(sys.prefix).resolve() == (REPO / ".venv").resolve() or not venv_python.exists():
        return sys.executable
    return str(venv_python)


# -- Redis -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(port: int, *args: str) -> bytes:
    """One command over RESP with the standard library (this script needs no redis-py)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if data.startswith(b"-"):
        raise RuntimeError(f"redis {args[0]}: {data.decode(errors='replace').strip()}")
    return data


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[int, str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="bench-peers-redis-") as root:
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1", "--dir", root),
                *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if redis_command(port, "PING").startswith(b"+PONG"):
                        break
                except (OSError, RuntimeError):
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("redis-server did not start")
                time.sleep(0.05)
            info = redis_command(port, "INFO", "server").decode()
            version = next(
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if line.startswith("redis_version:")
            )
            yield port, version
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- running the adapters ----------------------------------------------------------------------


def run_adapter(
    python: str, adapter: Path, variant: str, port: int, args: argparse.Namespace
) -> dict[str, Any] | str:
    """One run; the adapter's JSON line, or an error message."""
    redis_command(port, "FLUSHDB")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_REDIS_URL")}
    cmd = [
        python,
        str(adapter),
        *("--redis-url", f"redis://127.0.0.1:{port}/0"),
        *("--jobs", str(args.jobs), "--round-trips", str(args.round_trips)),
        *(("--variant", variant) if variant else ()),
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=adapter.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {RUN_TIMEOUT_S} s"
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return f"no JSON line on stdout: {proc.stdout[-2000:]!r}"
    missing = [k for k in KEYS if k not in result]
    if missing:
        return f"JSON line lacks {missing}: {lines[-1]}"
    return dict(result)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": runs[-1]["version"],
        "runs": len(runs),
        "notes": runs[-1]["notes"],
    }
    for key in FIGURES:
        values = [float(r[key]) for r in runs]
        out[key] = round(statistics.median(values), 4)
        out[f"{key}_min"] = round(min(values), 3)
        out[f"{key}_max"] = round(max(values), 3)
    return out


def ratios(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
    """For each compared column: the best peer, aijobs / that peer, and aijobs / redis-py."""
    peers = {q: m for q, m in table.items() if q not in (OURS, *BASELINES)}
    if OURS not in table or not peers:
        return None
    ours = table[OURS]
    out: dict[str, dict[str, Any]] = {}
    for key, (_, higher_is_better) in COMPARED.items():
        pick = max if higher_is_better else min
        best = pick(peers, key=lambda q: float(peers[q][key]))
        column: dict[str, Any] = {
            "best_peer": best,
            "ratio": _ratio(ours[key], peers[best][key]),
        }
        if BASELINE in table:
            column["vs_redis_py"] = _ratio(ours[key], table[BASELINE][key])
        out[key] = column
    return out


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def rtt_floor(port: int, args: argparse.Namespace) -> dict[str, float]:
    """bench_rtt_floor.py on the same Redis: the round trip of aijobs' hops and nothing else."""
    cmd = [project_python(), str(REPO / "bench" / "bench_rtt_floor.py"), "--json"]
    cmd += ["--redis-url", f"redis://127.0.0.1:{port}/0", "--runs", str(args.runs)]
    cmd += ["--round-trips", str(max(args.round_trips, 300))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    floor: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    log(f"round-trip floor p50: {floor}")
    return floor


def _span(m: dict[str, Any], key: str) -> str:
    """A median with its min-max over the runs (when there were several)."""
    if m["runs"] == 1:
        return f"{m[key]:,.0f}"
    return f"{m[key]:,.0f} ({m[f'{key}_min']:,.0f}{DASH}{m[f'{key}_max']:,.0f})"


def markdown(
    table: dict[str, dict[str, Any]],
    rat: dict[str, dict[str, Any]] | None,
    n_runs: int,
    floor: dict[str, float],
    partial: bool,
) -> str:
    lines = [
        f"Each figure is the median over {n_runs} run(s) of the command above; each run ran "
        "every queue below once. End to end: one producer submits N jobs one at a time while "
        "one worker drains, from the first submit to the last completion; CPU per job: user + "
        "system time of the producer, the worker and its children, and redis-server over that "
        "window, divided by N.",
        "",
        "| Queue | Version | **End to end, jobs/s** | CPU per job (all + Redis) | of which Redis "
        "| Tail after last submit | Drain, jobs/s | Enqueue, jobs/s "
        "| Round trip p50 | Round trip p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for queue, m in table.items():
        name = f"{queue} (baseline)" if queue in BASELINES else queue
        if m["runs"] < n_runs:
            name += f" ({m['runs']} of {n_runs} runs)"
        lines.append(
            f"| {name} | {m['version']} | {_span(m, 'e2e_per_s')} "
            f"| {m['cpu_ms_per_job']:.3f} ms | {m['redis_cpu_ms_per_job']:.3f} ms "
            f"| {m['e2e_tail_ms']:,.1f} ms | {_span(m, 'drain_per_s')} "
            f"| {m['enqueue_per_s']:,.0f} | {m['rtt_p50_ms']:.2f} ms | {m['rtt_p99_ms']:.2f} ms |"
        )
    if rat is not None:

        def cell(key: str) -> str:
            r = rat[key]
            return "" if r["ratio"] is None else f"{r['ratio']:.2f}{TIMES} ({r['best_peer']})"

        lines.append(
            f"| **{OURS} / best peer** | | **{cell('e2e_per_s')}** | {cell('cpu_ms_per_job')} "
            f"| | | {cell('drain_per_s')} | | {cell('rtt_p50_ms')} | |"
        )
        said = ", ".join(
            f"{label} {rat[key]['ratio']:.2f}{TIMES} {rat[key]['best_peer']}'s"
            for key, (label, _) in COMPARED.items()
            if rat[key]["ratio"] is not None
        )
        lines += ["", f"{OURS} against the best peer on each column: {said}."]
        if all("vs_redis_py" in r for r in rat.values()):
            said = ", ".join(
                f"{label} {rat[key]['vs_redis_py']:.2f}{TIMES}"
                for key, (label, _) in COMPARED.items()
                if rat[key]["vs_redis_py"] is not None
            )
            lines.append(f"Against the bare redis-py loop: {said}.")
    if partial:
        lines += [
            "",
            "Not every peer ran (--only, or a failed run): the ratios are to the peers above.",
        ]
    if floor:
        lines += [
            "",
            "Round-trip floor, p50 (`bench/bench_rtt_floor.py`, same Redis: aijobs' hops, "
            "submit script, worker pop, child pipe, finish script, notification, and nothing "
            "else): " + ", ".join(f"{client} {ms:.2f} ms" for client, ms in floor.items()) + ".",
        ]
    lines += ["", "Settings:", ""]
    lines += [f"- {queue}: {m['notes']}" for queue, m in table.items()]
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _chosen_queues(parser: argparse.ArgumentParser, only: str) -> list[str]:
    """The queues to measure: all of them, or those --only names (a name, or the part before a
    `-`: `huey` is every Huey setting), less any not yet written."""
    queues = [*PEERS, OURS]
    if only:
        wanted = [q.strip() for q in only.split(",") if q.strip()]

        def named(queue: str, name: str) -> bool:
            return queue == name or queue.startswith(f"{name}-")

        unknown = [w for w in wanted if not any(named(q, w) for q in queues)]
        if unknown:
            parser.error(f"unknown queue(s) {unknown}; known: {', '.join(queues)}")
        queues = [q for q in queues if any(named(q, w) for w in wanted)]
    if OURS in queues and not OURS_ADAPTER.exists():
        log(f"skipping {OURS}: {OURS_ADAPTER.relative_to(REPO)} does not exist yet")
        queues.remove(OURS)
    if not queues:
        sys.exit("nothing to run")
    return queues


def _interpreter(queue: str) -> str:
    """The Python that runs `queue`'s adapter: ours, or the peer's own environment (made once)."""
    folder = None if queue == OURS else PEERS[queue][1]
    if folder is None:
        return project_python()
    return str(ensure_venv(folder, VENVS[folder]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--round-trips", type=int, default=300)
    p.add_argument(
        "--only", default="", help="comma-separated queues, e.g. huey,rq,aijobs (huey: all four)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where peers.json/md go")
    args = p.parse_args()

    queues = _chosen_queues(p, args.only)
    pythons = {q: _interpreter(q) for q in queues}
    adapters = {q: OURS_ADAPTER if q == OURS else PEERS_DIR / PEERS[q][0] for q in queues}
    variants = {q: "" if q == OURS else PEERS[q][2] for q in queues}

    raw: dict[str, list[dict[str, Any]]] = {q: [] for q in queues}
    errors: dict[str, list[str]] = {q: [] for q in queues}
    meta = machine()
    started = time.monotonic()
    with redis_server() as (port, redis_version):
        meta["redis"] = redis_version
        log(f"redis-server {redis_version} on port {port} (AOF, appendfsync everysec)")
        for k in range(args.runs):
            order = queues if k % 2 == 0 else queues[::-1]
            for q in order:
                t = time.monotonic()
                result = run_adapter(pythons[q], adapters[q], variants[q], port, args)
                if isinstance(result, str):
                    errors[q].append(result)
                    log(f"run {k + 1}/{args.runs} {q}: FAILED {result}")
                    continue
                raw[q].append(result)
                log(
                    f"run {k + 1}/{args.runs} {q:22s} e2e {result['e2e_per_s']:>7,.0f}/s  "
                    f"cpu {result['cpu_ms_per_job']:.3f} ms/job "
                    f"(redis {result['redis_cpu_ms_per_job']:.3f})  "
                    f"drain {result['drain_per_s']:>7,.0f}/s  "
                    f"enqueue {result['enqueue_per_s']:>7,.0f}/s  "
                    f"rtt p50 {result['rtt_p50_ms']:6.2f} ms  p99 {result['rtt_p99_ms']:6.2f} ms"
                    f"  ({time.monotonic() - t:.0f} s)"
                )

        floor = rtt_floor(port, args)
    meta["loadavg_at_end"] = os.getloadavg()

    table = {q: medians(raw[q]) for q in queues if raw[q]}
    rat = ratios(table)
    partial = set(table) != {*PEERS, OURS} or any(errors.values())
    md = markdown(table, rat, args.runs, floor, partial)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "bench/bench_peers.py " + " ".join(sys.argv[1:])
    report = {
        "command": command.strip(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": meta,
        "seconds": round(time.monotonic() - started, 1),
        "params": {"runs": args.runs, "jobs": args.jobs, "round_trips": args.round_trips},
        "medians": table,
        "ratios": rat,
        "rtt_floor_p50_ms": floor,
        "runs": raw,
        "errors": {q: e for q, e in errors.items() if e},
    }
    (args.out / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    load = meta["loadavg_at_start"][0], meta["loadavg_at_end"][0]
    (args.out / "peers.md").write_text(
        f"`{command.strip()}` — {report['date']}, {meta['cpus']} CPUs ({meta['cpu_model']}), "
        f"Redis {meta['redis']}, Python {meta['python']}, load average (1 min) "
        f"{load[0]:.2f} at the start, {load[1]:.2f} at the end\n\n" + md
    )
    log(f"wrote {args.out / 'peers.json'} and {args.out / 'peers.md'}")
    if any(errors.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
