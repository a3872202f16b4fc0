"""GET /jobs/{id}/events and the logs route's absolute offsets, in process on a real SQLite
store (the live stream of a running job, with real workers, is in tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aijobs.api.auth import ANONYMOUS, Caller
from aijobs.api.logview import LogView
from aijobs.api.routes.events import Cursor, event_stream, job_events
from aijobs.jobs import Job, JobType, NewJob, Progress, State
from aijobs.store import JobStore
from aijobs.store.sqlite import SQLiteStore
from tests.unit import test_api_limits
from tests.unit.test_api import assert_envelope, train
from tests.unit.test_api_limits import Client, run

make_client = test_api_limits.make_client  # the fixture

Event = tuple[str, str, dict[str, Any]]


def parse_sse(body: str) -> list[Event]:
    """(id, event, data) of each event in a text/event-stream body; comments skipped."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and ":" in line[1:]
        )
        if "event" in fields:
            events.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return events


def finished_job(client: Any, *, keep: int | None = None) -> str:
    job_id: str = client.post("/jobs/training", json=train()).json()["job_id"]

    async def work(store: JobStore) -> None:
        (claim,) = await store.claim(["sklearn"], "w1", 60)
        written = ""
        for epoch in (1, 2):
            history = [{"epoch": e, "loss": 1 / e} for e in range(1, epoch + 1)]
            line = f"epoch {epoch} done\n"
            report = Progress(
                fraction=epoch / 2, metrics={"epoch": epoch}, history=history,
                log=line, log_at=len(written),
            )  # fmt: skip
            await store.renew("w1", {job_id: (claim.token, report)}, 60)
            written += line
        await store.finish(job_id, claim.token, {"model_id": "m"})

    run(client, work)
    return job_id


def test_the_events_of_an_ended_job_then_the_stream_closes(make_client: Client) -> None:
    client = make_client()
    job_id = finished_job(client)
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["progress", "log", "state"]  # the final state last
    _, _, progress = events[0]
    assert [h["epoch"] for h in progress["history"]] == [1, 2]
    assert events[1][2] == {"offset": 0, "end": 26, "text": "epoch 1 done\nepoch 2 done\n"}
    assert events[2][2]["status"] == "completed"
    assert events[2][2]["result"] == {"model_id": "m"}
    assert len({event_id for event_id, _, _ in events}) == 3
    # Resumed after the last event: nothing more, the stream ends at once.
    again = client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": events[-1][0]})
    assert (again.status_code, again.text) == (204, "")  # an EventSource stops reconnecting
    # Resumed after the first: the rest, exactly.
    rest = client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": events[0][0]})
    assert parse_sse(rest.text) == events[1:]


def test_bad_requests_for_events(make_client: Client) -> None:
    client = make_client()
    assert_envelope(client.get("/jobs/job_missing/events"), 404, "not found")
    job_id = finished_job(client)
    for bad in ("nonsense", "1.running.0.-.x", "1.sleeping.0.-.0", "1.running.0.ABCDEFGH.0"):
        response = client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": bad})
        assert_envelope(response, 400, "Last-Event-ID")


def test_log_offsets_are_absolute_past_the_kept_tail(make_client: Client) -> None:
    client = make_client(log_keep_chars=1024)
    job_id = client.post("/jobs/training", json=train()).json()["job_id"]
    lines = [f"line {n:04d}\n" for n in range(200)]  # 10 characters each

    async def work(store: JobStore) -> None:
        (claim,) = await store.claim(["sklearn"], "w1", 60)
        for n, line in enumerate(lines):
            report = Progress(log=line, log_at=10 * n)
            await store.renew("w1", {job_id: (claim.token, report)}, 60)

    run(client, work)  # still running: the log is readable before the job ends
    whole = client.get(f"/jobs/{job_id}/logs")
    assert whole.headers["X-Log-Length"] == "2000"
    assert whole.headers["X-Log-Offset"] == str(2000 - 1024)
    assert whole.headers["X-Log-Next-Offset"] == "2000"
    assert whole.text == "".join(lines)[-1024:]
    page = client.get(f"/jobs/{job_id}/logs", params={"offset": 1500, "limit": 20})
    assert page.text == "line 0150\nline 0151\n"
    assert (page.headers["X-Log-Offset"], page.headers["X-Log-Next-Offset"]) == ("1500", "1520")
    dropped = client.get(f"/jobs/{job_id}/logs", params={"offset": 0, "limit": 4})
    assert (dropped.text, dropped.headers["X-Log-Offset"]) == ("097\n", "976")  # where it starts
    tail = client.get(f"/jobs/{job_id}/logs", params={"tail": 10})
    assert (tail.text, tail.headers["X-Log-Offset"]) == ("line 0199\n", "1990")


def job(**kw: Any) -> Job:
    base: dict[str, Any] = {
        "id": "job_x",
        "job_type": JobType.TRAINING,
        "queue": "q",
        "state": State.RUNNING,
        "payload": {},
        "attempt": 1,
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    return Job(**(base | kw))


def test_resuming_anywhere_equals_one_uninterrupted_stream() -> None:
    """Snapshots of a job as a stream reads them; a client that drops after any event and
    resumes with its id receives exactly what the uninterrupted client did."""
    snapshots = [
        job(state=State.PENDING, attempt=0),
        job(progress=0.25, metrics={"step": 1}, log="a\nb", log_length=3),
        job(progress=0.5, history=[{"epoch": 1}], log="a\nb\nc\n", log_length=6),
        job(attempt=2, progress=0.0, history=[], log="a\nb\nc\nd\n", log_length=8),
        job(attempt=2, state=State.COMPLETED, progress=1.0, history=[{"epoch": 1}],
            log="a\nb\nc\nd\ne\n", log_length=10),
    ]  # fmt: skip

    def stream(seen: Cursor, first: int = 0) -> list[tuple[int, str, str, Any]]:
        out = []
        for n, snap in enumerate(snapshots[first:], first):
            for kind, data, seen in job_events(snap, seen, ANONYMOUS):  # noqa: B020
                out.append((n, str(seen), kind, data))
        return out

    whole = stream(Cursor())
    assert [kind for _, _, kind, _ in whole].count("state") == 4  # pending, running, rerun, end
    logs = "".join(data["text"] for _, _, kind, data in whole if kind == "log")
    assert logs == "a\nb\nc\nd\ne\n"
    assert len({event_id for _, event_id, _, _ in whole}) == len(whole)
    for cut, (snapshot, event_id, _, _) in enumerate(whole):
        # dropped after event `cut`, reconnected with its id: the job as it was then, or later
        assert stream(Cursor.parse(event_id), snapshot) == whole[cut + 1 :]
        later = stream(Cursor.parse(event_id), len(snapshots) - 1)
        seen_text = "".join(d["text"] for _, _, kind, d in whole[: cut + 1] if kind == "log")
        rest_text = "".join(d["text"] for _, _, kind, d in later if kind == "log")
        assert seen_text + rest_text == logs  # no loss, no repeat
        if cut < len(whole) - 1:
            assert later[-1][2:] == whole[-1][2:]  # the final state, once
        states = [d["status"] for _, _, kind, d in whole[: cut + 1] + later if kind == "state"]
        assert states.count("completed") == 1


def test_a_caller_who_is_not_an_admin_reads_whole_lines_while_the_job_runs() -> None:
    who = Caller(principal="p", admin=False)
    running = LogView("one\ntwo\nthr", 100, 111, complete=False)
    assert running.cut(100, 111, who) == ("one\ntwo\n", 100, 108)
    assert running.cut(102, 111, who) == ("two\n", 104, 108)  # a page from mid-line
    assert running.cut(100, 111, ANONYMOUS) == ("one\ntwo\nthr", 100, 111)
    ended = LogView("one\ntwo\nthr", 100, 111, complete=True)
    assert ended.cut(108, 111, who) == ("thr", 108, 111)


async def test_an_idle_stream_sends_heartbeats_until_the_job_ends(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "aijobs.db"))
    await store.open()
    try:
        pending = await store.submit(NewJob(job_type=JobType.TRAINING, queue="q", payload={}))
        stream = event_stream(store, ANONYMOUS, pending, Cursor(), poll=0.01, heartbeat=0.05)
        chunks = [await anext(stream) for _ in range(4)]
        assert chunks[0].startswith("retry: ")
        assert "event: state" in chunks[1]  # pending
        assert chunks[2:] == [": keep-alive\n\n"] * 2  # nothing happens: comments only
        await store.cancel(pending.id)
        rest = [chunk async for chunk in stream]  # the final state, then the end
        assert rest[-1].startswith("id: ")
        assert '"status":"cancelled"' in rest[-1]
    finally:
        await store.close()
