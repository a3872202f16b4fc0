"""What the job commands print: job states in colour, a job's status, and a job followed to its
end with a live progress bar (or one line per change without a terminal)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from aijobs.cli.options import JOB_FAILED, OK, TIMED_OUT
from aijobs.jobs import State

if TYPE_CHECKING:  # the SDK (and the API schemas it reuses) load only when a command runs
    from aijobs.api.schemas import JobStatus
    from aijobs.client import Client

STATE_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 200  # pipes and CI logs: never squeeze a table into 80 columns
    return console


def stdout_console() -> Console:
    return _console()


def stderr_console() -> Console:
    return _console(stderr=True)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def styled_state(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def metrics_line(metrics: dict[str, Any] | None, limit: int = 4) -> str:
    items = [(k, v) for k, v in (metrics or {}).items() if isinstance(v, int | float | str)]
    return " · ".join(f"{escape(k)} {_num(v)}" for k, v in items[:limit])


def progress_info(status: JobStatus) -> str:
    """One compact line while a job runs: its epoch, step and loss (e.g. "epoch 8 · step 3/10 ·
    loss 0.41"); a job that reports none of them shows its latest metrics instead."""
    metrics = status.metrics
    latest = status.history[-1] if status.history else {}
    # During an epoch the metrics carry it; between epochs it is the last finished one.
    epoch = metrics.get("epoch", latest.get("epoch"))
    parts = [] if epoch is None else [f"epoch {_num(epoch)}"]
    if "step" in metrics:
        total = metrics.get("steps_per_epoch")
        parts.append(f"step {_num(metrics['step'])}" + (f"/{_num(total)}" if total else ""))
    loss = next((metrics[k] for k in ("train_loss", "loss") if k in metrics), None)
    if loss is not None:
        parts.append(f"loss {_num(loss)}")
    return " · ".join(parts) if parts else metrics_line(metrics, limit=2)


def show_status(status: JobStatus) -> None:
    text = {
        "job": status.job_id,
        "type": status.job_type.value,
        "queue": status.queue,
        "model type": status.model_type,
        "model": status.model_id,
        "description": status.description,
        "progress": f"{status.progress:.0%}",
        "attempt": f"{status.attempt} of {status.max_attempts}",
        "created": status.created_at,
        "started": status.started_at,
        "finished": status.finished_at,
    }
    rows = {name: escape(value) for name, value in text.items() if value}
    rows["status"] = styled_state(status.status.value)
    if metrics := metrics_line(status.metrics, limit=8):
        rows["metrics"] = metrics
    if status.error:
        rows["error"] = f"[red]{escape(status.error)}[/]"
    if status.waiting is not None:
        rows["waiting"] = escape(status.waiting.reason)
    if status.result:
        pretty = json.dumps(status.result, indent=2, default=str)
        rows["result"] = escape(pretty.replace("\n", "\n" + " " * 13))
    names = list(text)
    out = stdout_console()
    for name in [*names[:2], "status", "waiting", *names[2:], "metrics", "error", "result"]:
        if name in rows:
            out.print(f"[bold]{name:<12}[/] {rows[name]}")


def show_outcome(status: JobStatus) -> None:
    out = stdout_console()
    if status.status is State.COMPLETED:
        out.print(f"[green]✔[/] {status.job_id} completed")
        result = status.result or {}
        if "model_id" in result:
            out.print(f"  model        {escape(str(result['model_id']))}")
        if metrics := metrics_line(result.get("metrics"), limit=8):
            out.print(f"  metrics      {metrics}")
        if "predictions" in result:
            out.print(f"  predictions  {escape(json.dumps(result['predictions']))}")
    else:
        reason = f": {escape(status.error)}" if status.error else ""
        out.print(f"{styled_state(status.status.value)} {status.job_id}{reason}")


def exit_for(status: JobStatus) -> int:
    return OK if status.status is State.COMPLETED else JOB_FAILED


def follow(client: Client, job_id: str, timeout: float | None, as_json: bool) -> int:
    """Wait for the job, showing its progress; the exit code for its outcome."""
    from aijobs.client import WaitTimeout

    err = stderr_console()
    try:
        if as_json:
            final = client.wait(job_id, timeout=timeout)
        elif err.is_terminal:
            final = _live_bar(client, job_id, timeout, err)
        else:
            final = _progress_lines(client, job_id, timeout, err)
    except WaitTimeout as exc:
        if as_json:
            print_json(exc.last.model_dump(mode="json"))
        err.print(f"[yellow]timeout:[/] {escape(str(exc))}")
        return TIMED_OUT
    if as_json:
        print_json(final.model_dump(mode="json"))
    else:
        show_outcome(final)
    return exit_for(final)


def statuses(client: Client, job_id: str, timeout: float | None) -> Iterator[JobStatus]:
    """The job's status after each of its events (GET /jobs/{id}/events), the final one last."""
    from aijobs.client import apply_event

    status = None
    for event in client.events(job_id, timeout=timeout):
        status = apply_event(status, event)
        if status is not None and event.event != "log":
            yield status


def _live_bar(client: Client, job_id: str, timeout: float | None, err: Console) -> JobStatus:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.fields[state]}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    final = None
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(job_id, total=1.0, state=styled_state("pending"), info="")
        for final in statuses(client, job_id, timeout):
            bar.update(
                task,
                completed=final.progress,
                state=styled_state(final.status.value),
                info=progress_info(final),
            )
    assert final is not None
    return final


def _progress_lines(client: Client, job_id: str, timeout: float | None, err: Console) -> JobStatus:
    """Without a terminal (CI logs, pipes): one line per change instead of a live bar."""
    final, seen = None, None
    for final in statuses(client, job_id, timeout):
        line = f"{final.status.value} {final.progress:.0%} {progress_info(final)}".strip()
        if line != seen:
            err.print(f"{job_id} {line}", markup=False)
            seen = line
    assert final is not None
    return final
