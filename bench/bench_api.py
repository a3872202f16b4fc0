"""HTTP submission throughput and warm-inference latency, through the real server and worker.

    .venv/bin/python bench/bench_api.py [--submissions 2000] [--inferences 200] [--runs 3]
    .venv/bin/python bench/bench_api.py --store redis --api-processes 1 2

Starts the API (`aijobs serve --workers N`, for each N of --api-processes) and one sklearn
worker on a fresh store in a temporary directory: the embedded SQLite store, or a redis-server
of its own (AOF on, appendfsync everysec). Submissions are measured from one client (httpx) and
from 16 keep-alive connections at once, each beside GET /health from the same clients, the
baseline the ratios are to. Warm inference waits with the long-poll (`GET /jobs/{id}/status?wait=`),
as the SDK does.

Beside them, the framework's own floor: a bare FastAPI app under the same uvicorn settings
(`framework_app` below: the spec's request and answer models, no store, no dependency, no
middleware) answering the same POST and GET /health from the same clients. What a POST costs
it beyond a /health is what any FastAPI endpoint with that body and answer costs, before a job
is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.harness import System
from tests.redis_server import RedisServer

from aijobs import __version__
from aijobs.api.schemas import Health, SubmitResponse, TrainingRequest
from aijobs.demo import write_demo_data
from aijobs.store import open_store

CONCURRENCY = 16  # clients of the concurrent runs
PENDING_ONLY = {"model_type": "inception", "data_path": "cifar10"}  # no worker drains it


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def sequential_submissions(url: str, n: int) -> float:
    with httpx.Client(base_url=url) as client:
        started = time.perf_counter()
        for _ in range(n):
            client.post("/jobs/training", json=PENDING_ONLY).raise_for_status()
        return n / (time.perf_counter() - started)


def sequential_health(url: str, n: int) -> float:
    """Baseline: the same client and server answering GET /health (no store write)."""
    with httpx.Client(base_url=url) as client:
        started = time.perf_counter()
        for _ in range(n):
            client.get("/health").raise_for_status()
        return n / (time.perf_counter() - started)


async def _keep_alive_connection(url: str, request: bytes, count: Iterator[int]) -> None:
    """One client: the same HTTP/1.1 request on one keep-alive connection, once per item of
    `count` (shared by every client), each answer read whole and checked for a 200.

    Plain asyncio streams rather than httpx.AsyncClient: with 16 connections its own work per
    request is several times the server's, so it measured the client."""
    parsed = urlsplit(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    try:
        for _ in count:
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if b" 200 " not in status:
                raise RuntimeError(f"answer {status!r}")
    finally:
        writer.close()


async def concurrent_requests(url: str, n: int, concurrency: int, submit: bool = True) -> float:
    """`n` POST /jobs/training (or GET /health, the baseline) from `concurrency` clients."""
    host = urlsplit(url).netloc
    if submit:
        body = json.dumps(PENDING_ONLY).encode()
        request = (
            f"POST /jobs/training HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    else:
        request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    count = iter(range(n))
    started = time.perf_counter()
    await asyncio.gather(*(_keep_alive_connection(url, request, count) for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def warm_inference(system: System, n: int) -> dict[str, list[float]]:
    """Per job (ms): end to end, the model's predict, and the hops between: the POST's answer;
    from the stored submission to the stored end, less the worker's round trip to its
    inference child (the worker's wake-up, claim and finish); that round trip less the predict
    (the pipes, the request's decoding); from the stored end to the long-poll's answer. The
    stored times are the store's (ms), read afterwards with a store client of the bench's own."""
    trained = system.wait(
        system.submit(
            "/jobs/training", {"model_type": "random_forest", "data_path": "tabular_data.csv"}
        )
    )
    model_id = trained["result"]["model_id"]
    body = {"model_id": model_id, "input_data": "5.1,3.5,1.4,0.2"}
    # (job id, wall clock at the POST, POST ms, wall clock at the answer, e2e, predict, the
    # worker's round trip to its inference child)
    rows = []
    with httpx.Client(base_url=system.url) as client:
        for i in range(n + 5):
            posted, started = time.time(), time.perf_counter()
            job_id = client.post("/jobs/inference", json=body).json()["job_id"]
            post_ms = (time.perf_counter() - started) * 1000
            status = client.get(f"/jobs/{job_id}/status", params={"wait": 30}, timeout=40).json()
            elapsed, answered = (time.perf_counter() - started) * 1000, time.time()
            assert status["status"] == "completed", status
            if i >= 5:  # the first few load the model
                result = status["result"]
                predict, child = result["predict_ms"], result["inference_time_ms"]
                rows.append((job_id, posted, post_ms, answered, elapsed, predict, child))
    stored = asyncio.run(stored_times(system, [row[0] for row in rows]))
    hops: dict[str, list[float]] = {
        "end_to_end": [],
        "predict": [],
        "post": [],
        "worker": [],
        "child": [],
        "answer": [],
    }
    for (_, _, post_ms, answered, elapsed, predict, child), (created, finished) in zip(
        rows, stored, strict=True
    ):
        hops["end_to_end"].append(elapsed)
        hops["predict"].append(predict)
        hops["post"].append(post_ms)
        hops["worker"].append((finished - created) * 1000 - child)
        hops["child"].append(child - predict)
        hops["answer"].append((answered - finished) * 1000)
    return hops


async def stored_times(system: System, job_ids: list[str]) -> list[tuple[float, float]]:
    """(created_at, finished_at) of each job, as the store holds them."""
    url = system.env.get("AIJOBS_STORE_URL") or f"sqlite:///{system.home / 'aijobs.db'}"
    store = open_store(url)
    await store.open()
    try:
        jobs = [await store.get(job_id) for job_id in job_ids]
    finally:
        await store.close()
    return [(job.created_at, job.finished_at or job.created_at) for job in jobs]


def framework_app() -> FastAPI:
    """The floor: FastAPI answering the spec's training submission with its request and answer
    models (validated and serialized as the API does), and GET /health, with nothing else.
    (Module-level imports: FastAPI resolves the handlers' annotations in this module.)"""
    app = FastAPI()

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(timestamp="2026-12-01T00:00:00Z", version=__version__, store="none")

    @app.post("/jobs/training", response_model=SubmitResponse)
    async def submit(body: TrainingRequest) -> SubmitResponse:
        return SubmitResponse(
            job_id="job_" + "0" * 36,
            created_at="2026-12-01T00:00:00Z",
            estimated_duration="unknown",
            queue="pytorch-2.1-cpu",
            queue_has_worker=True,
        )

    return app


def framework_floor(n: int, runs: int) -> dict[str, float]:
    """submissions() against framework_app, served as `aijobs serve` serves the API."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = ["--factory", "bench_api:framework_app", "--app-dir", str(Path(__file__).parent)]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *app, "--port", str(port), "--log-level", "info"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/health").raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return submissions(url, n, runs)
    finally:
        server.terminate()
        server.wait()


def submissions(url: str, n: int, runs: int) -> dict[str, float]:
    base = [sequential_health(url, n) for _ in range(runs)]
    seq = [sequential_submissions(url, n) for _ in range(runs)]
    base_conc = [
        asyncio.run(concurrent_requests(url, n, CONCURRENCY, submit=False)) for _ in range(runs)
    ]
    conc = [asyncio.run(concurrent_requests(url, n, CONCURRENCY)) for _ in range(runs)]
    return {
        "health": statistics.median(base),
        "sequential": statistics.median(seq),
        "health_concurrent": statistics.median(base_conc),
        "concurrent": statistics.median(conc),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--inferences", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--api-processes", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_demo_data(data)
        env = {"AIJOBS_LEASE_SECONDS": "30"}
        redis = None
        if args.store == "redis":
            redis = RedisServer(Path(tmp) / "redis", extra=("--appendfsync", "everysec"))
            redis.start()
            env["AIJOBS_STORE_URL"] = redis.url
        system = System(home=Path(tmp) / "var", data=data, env_overrides=env)
        figures: dict[int, dict[str, float]] = {}
        try:
            for i, processes in enumerate(args.api_processes):
                system.start_api(processes)
                if i == 0:
                    system.start_worker("sklearn")
                figures[processes] = submissions(system.url, args.submissions, args.runs)
                if i == 0:
                    hops = warm_inference(system, args.inferences)
                system.stop(system.api)
        finally:
            system.stop_all()
            if redis is not None:
                redis.stop()
        floor = framework_floor(args.submissions, args.runs)
    print(
        f"store: {args.store}; submissions over HTTP, {args.submissions} per run, median of "
        f"{args.runs} runs:"
    )
    for processes, f in figures.items():
        ratio = f["sequential"] / f["health"]
        conc_ratio = f["concurrent"] / f["health_concurrent"]
        print(f"  {processes} API process(es):")
        print(f"    baseline GET /health, same client: {f['health']:8.0f} req/s")
        print(
            f"    sequential (1 client, keep-alive): {f['sequential']:8.0f} jobs/s ({ratio:.2f}x)"
        )
        print(f"    baseline GET /health, 16 clients:  {f['health_concurrent']:8.0f} req/s")
        print(
            f"    concurrent (16 clients):           {f['concurrent']:8.0f} jobs/s "
            f"({conc_ratio:.2f}x)"
        )
    # 0.8x of /health leaves a POST 1/0.8 - 1 = 25 % of a /health's time beyond it.
    print("  the framework's floor (FastAPI + uvicorn, the spec's models, no store):")
    for label, post, health in (
        ("sequential", "sequential", "health"),
        ("16 clients", "concurrent", "health_concurrent"),
    ):
        extra_us = (1 / floor[post] - 1 / floor[health]) * 1e6
        budget_us = 0.25 / figures[args.api_processes[0]][health] * 1e6
        print(
            f"    {label}: GET /health {floor[health]:6.0f} req/s, POST {floor[post]:6.0f} "
            f"req/s ({floor[post] / floor[health]:.2f}x): a POST's body and answer cost "
            f"{extra_us:4.0f} us beyond a /health; 0.8x of the API's /health allows "
            f"{budget_us:4.0f} us"
        )
    print(
        f"warm inference, {args.inferences} sequential jobs (submit, then the long-poll "
        "?wait= until completed):"
    )
    e2e, predict = hops["end_to_end"], hops["predict"]
    print(f"  end to end   p50 {percentile(e2e, 50):7.2f} ms   p99 {percentile(e2e, 99):7.2f} ms")
    p50, p99 = percentile(predict, 50), percentile(predict, 99)
    print(f"  model.predict p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    over = [a - b for a, b in zip(e2e, predict, strict=True)]
    print(f"  end to end less predict, p50 {percentile(over, 50):7.2f} ms, of which (p50 each):")
    print(f"    POST answered                          {percentile(hops['post'], 50):7.2f} ms")
    worker, child = percentile(hops["worker"], 50), percentile(hops["child"], 50)
    print(f"    stored -> stored as ended, less the child {worker:5.2f} ms (wake, claim, finish)")
    print(f"    the worker's round trip to its inference child, less predict {child:5.2f} ms")
    print(f"    stored as ended -> long-poll answered  {percentile(hops['answer'], 50):7.2f} ms")


if __name__ == "__main__":
    main()
