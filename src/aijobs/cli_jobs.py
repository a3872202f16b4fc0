"""The job commands of the `aijobs` command line: submit, status, wait, list, cancel, logs, ...

They talk to a running API through the SDK (`--url`, else $AIJOBS_URL, else localhost:8000).
Exit codes, for scripts:

    0  done: the command worked (and a waited-for job completed)
    1  the job failed or was cancelled (wait, submit --wait, logs -f)
    2  usage or validation error: bad options, or the API answered 4xx (unknown job, bad input)
    3  the API is unreachable (after retries) or answered 5xx
    4  wait --timeout ran out while the job was still pending or running
  130  interrupted (Ctrl-C); a job being waited for keeps running (`aijobs cancel` stops it)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

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
from rich.table import Table

from aijobs.jobs import State

if TYPE_CHECKING:  # the SDK (and the API schemas it reuses) load only when a command runs
    from aijobs.api.schemas import JobStatus, SubmitResponse
    from aijobs.client import Client

OK, JOB_FAILED, USAGE, UNAVAILABLE, TIMED_OUT, INTERRUPTED = 0, 1, 2, 3, 4, 130
STATE_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}

GlobalUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="AIJOBS_URL", help="API address \\[default: http://localhost:8000]"
    ),
]
# A command's own --url (after the command name) wins over the global one and $AIJOBS_URL.
UrlOpt = Annotated[
    str | None, typer.Option("--url", help="API address (default: $AIJOBS_URL, localhost:8000)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]


@dataclass
class Opts:
    url: str
    as_json: bool


def _opts(ctx: typer.Context, url: str | None, as_json: bool) -> Opts:
    parent = ctx.find_object(Opts)
    return Opts(
        url=url or (parent.url if parent else _default_url()),
        as_json=as_json or bool(parent and parent.as_json),
    )


def global_options(ctx: typer.Context, url: GlobalUrlOpt = None, as_json: JsonOpt = False) -> None:
    """aijobs: an HTTP job queue for machine-learning work."""
    ctx.obj = Opts(url=url or _default_url(), as_json=as_json)


def _default_url() -> str:
    return os.environ.get("AIJOBS_URL") or "http://localhost:8000"


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 200  # pipes and CI logs: never squeeze a table into 80 columns
    return console


def _out() -> Console:
    return _console()


def _err() -> Console:
    return _console(stderr=True)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@contextlib.contextmanager
def _client(opts: Opts) -> Iterator[Client]:
    """A client; API errors become a message on stderr and the documented exit code."""
    from aijobs.client import APIConnectionError, APIError, Client

    try:
        with Client(opts.url) as client:
            yield client
    except APIError as exc:
        code = USAGE if exc.status_code is not None and exc.status_code < 500 else UNAVAILABLE
        if opts.as_json:
            envelope = {"error": exc.error, "detail": exc.detail, "status_code": exc.status_code}
            typer.echo(json.dumps(envelope), err=True)
        else:
            _err().print(f"[red]error:[/] {escape(exc.error)}: {escape(exc.detail)}")
            if isinstance(exc, APIConnectionError):
                _err().print("is the API running? start it with `aijobs up` (or `make run`)")
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        _err().print("interrupted: the job, if any, keeps running (`aijobs cancel JOB` stops it)")
        raise typer.Exit(INTERRUPTED) from None


# -- parsing -----------------------------------------------------------------------------------
def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any] | None:
    """`k=v` pairs; each value is JSON when it parses (2, 0.1, true, [1,2]), else a string."""
    if not pairs:
        return None
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        parsed[key.strip()] = value
    return parsed


# -- showing -----------------------------------------------------------------------------------
def _state(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _metrics(metrics: dict[str, Any] | None, limit: int = 4) -> str:
    items = [(k, v) for k, v in (metrics or {}).items() if isinstance(v, int | float | str)]
    return " · ".join(f"{escape(k)} {_num(v)}" for k, v in items[:limit])


def _progress_info(status: JobStatus) -> str:
    parts = []
    if status.history and "epoch" in status.history[-1]:
        parts.append(f"epoch {_num(status.history[-1]['epoch'])}")
    if metrics := _metrics(status.metrics):
        parts.append(metrics)
    return " · ".join(parts)


def _show_status(status: JobStatus) -> None:
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
    rows["status"] = _state(status.status.value)
    if metrics := _metrics(status.metrics, limit=8):
        rows["metrics"] = metrics
    if status.error:
        rows["error"] = f"[red]{escape(status.error)}[/]"
    if status.result:
        pretty = json.dumps(status.result, indent=2, default=str)
        rows["result"] = escape(pretty.replace("\n", "\n" + " " * 13))
    names = list(text)
    out = _out()
    for name in [*names[:2], "status", *names[2:], "metrics", "error", "result"]:
        if name in rows:
            out.print(f"[bold]{name:<12}[/] {rows[name]}")


def _show_outcome(status: JobStatus) -> None:
    out = _out()
    if status.status is State.COMPLETED:
        out.print(f"[green]✔[/] {status.job_id} completed")
        result = status.result or {}
        if "model_id" in result:
            out.print(f"  model        {escape(str(result['model_id']))}")
        if metrics := _metrics(result.get("metrics"), limit=8):
            out.print(f"  metrics      {metrics}")
        if "predictions" in result:
            out.print(f"  predictions  {escape(json.dumps(result['predictions']))}")
    else:
        reason = f": {escape(status.error)}" if status.error else ""
        out.print(f"{_state(status.status.value)} {status.job_id}{reason}")


def _exit_for(status: JobStatus) -> int:
    return OK if status.status is State.COMPLETED else JOB_FAILED


def _follow(client: Client, job_id: str, timeout: float | None, as_json: bool) -> int:
    """Wait for the job, showing its progress; the exit code for its outcome."""
    from aijobs.client import WaitTimeout

    err = _err()
    try:
        if as_json:
            final = client.wait(job_id, timeout=timeout)
        elif err.is_terminal:
            final = _live_bar(client, job_id, timeout, err)
        else:
            final = _progress_lines(client, job_id, timeout, err)
    except WaitTimeout as exc:
        if as_json:
            _print_json(exc.last.model_dump(mode="json"))
        err.print(f"[yellow]timeout:[/] {escape(str(exc))}")
        return TIMED_OUT
    if as_json:
        _print_json(final.model_dump(mode="json"))
    else:
        _show_outcome(final)
    return _exit_for(final)


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
        task = bar.add_task(job_id, total=1.0, state=_state("pending"), info="")
        for final in client.watch(job_id, every=0.5, timeout=timeout):
            bar.update(
                task,
                completed=final.progress,
                state=_state(final.status.value),
                info=_progress_info(final),
            )
    assert final is not None
    return final


def _progress_lines(client: Client, job_id: str, timeout: float | None, err: Console) -> JobStatus:
    """Without a terminal (CI logs, pipes): one line per change instead of a live bar."""
    final, seen = None, None
    for final in client.watch(job_id, every=1.0, timeout=timeout):
        line = f"{final.status.value} {final.progress:.0%} {_progress_info(final)}".strip()
        if line != seen:
            err.print(f"{job_id} {line}", markup=False)
            seen = line
    assert final is not None
    return final


# -- commands ----------------------------------------------------------------------------------
submit_app = typer.Typer(help="Submit a training or inference job.", no_args_is_help=True)


@submit_app.command("training")
def submit_training(
    ctx: typer.Context,
    model_type: Annotated[str, typer.Option("--model-type", "-m", help="e.g. random_forest")],
    data: Annotated[str, typer.Option("--data", "-d", help="data_path, e.g. tabular_data.csv")],
    hp: Annotated[
        list[str] | None,
        typer.Option("--hp", help="Hyperparameter KEY=VALUE (JSON value), repeatable"),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the job is for")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="requires_gpu")] = False,
    framework: Annotated[
        str | None, typer.Option("--framework", help="framework_override, e.g. pytorch-2.0")
    ] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first within its queue")] = 0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="The job's time limit in seconds")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends")] = False,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a training job (routed to its framework's queue)."""
    opts = _opts(ctx, url, as_json)
    hyperparameters = parse_pairs(hp, "--hp")
    with _client(opts) as client:
        accepted = client.submit_training(
            model_type,
            data,
            hyperparameters,
            description=description,
            requires_gpu=gpu,
            framework_override=framework,
            priority=priority,
            timeout_seconds=timeout,
        )
        _submitted(client, accepted, wait, opts)


@submit_app.command("inference")
def submit_inference(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="model_id of a trained model")],
    input_data: Annotated[
        str, typer.Option("--input", "-i", help="input_data; '-' reads it from stdin")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Parameter KEY=VALUE (JSON value), repeatable"),
    ] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first within its queue")] = 0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="The job's time limit in seconds")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends")] = False,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit an inference job with a trained model."""
    opts = _opts(ctx, url, as_json)
    parameters = parse_pairs(param, "--param")
    if input_data == "-":
        input_data = sys.stdin.read()
    with _client(opts) as client:
        accepted = client.submit_inference(
            model, input_data, parameters, priority=priority, timeout_seconds=timeout
        )
        _submitted(client, accepted, wait, opts)


def _submitted(client: Client, accepted: SubmitResponse, wait: bool, opts: Opts) -> None:
    if opts.as_json and not wait:
        _print_json(accepted.model_dump(mode="json"))
    elif not opts.as_json:
        worker = "" if accepted.queue_has_worker else " [yellow](no live worker yet)[/]"
        _out().print(
            f"submitted {accepted.job_id} to queue {escape(accepted.queue)}{worker}, "
            f"estimated {accepted.estimated_duration}"
        )
        if accepted.message:
            _err().print(f"[yellow]note:[/] {escape(accepted.message)}")
    if wait:
        raise typer.Exit(_follow(client, accepted.job_id, None, opts.as_json))


def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's status, progress, metrics and result."""
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        current = client.status(job_id)
    if opts.as_json:
        _print_json(current.model_dump(mode="json"))
    else:
        _show_status(current)


def wait(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds (exit 4)")
    ] = None,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow a job until it ends, with a live progress bar (epoch and latest metrics).

    Exit code 0 when it completed, 1 when it failed or was cancelled.
    """
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        code = _follow(client, job_id, timeout, opts.as_json)
    raise typer.Exit(code)


def list_jobs(
    ctx: typer.Context,
    state: Annotated[
        State | None, typer.Option("--status", "-s", help="Only jobs in this state")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many (newest first)")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many")] = 0,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first, as a table."""
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        page = client.list_page(state, limit, offset)
    if opts.as_json:
        _print_json(page.model_dump(mode="json"))
        return
    table = Table(title=f"{len(page.jobs)} of {page.total} jobs", title_justify="left")
    for name in ("JOB", "TYPE", "STATUS", "QUEUE", "MODEL", "PROGRESS", "CREATED"):
        table.add_column(name, no_wrap=name in {"JOB", "STATUS", "CREATED"})
    for row in page.jobs:
        table.add_row(
            row["job_id"],
            row["job_type"],
            _state(row["status"]),
            escape(row.get("queue") or ""),
            escape(row.get("model_type") or row.get("model_id") or ""),
            f"{row.get('progress', 0):.0%}",
            row["created_at"],
        )
    _out().print(table)


def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a pending or running job (a running job's process is killed)."""
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        cancelled = client.cancel(job_id)
    if opts.as_json:
        _print_json(cancelled.model_dump(mode="json"))
    else:
        _out().print(f"{_state(cancelled.status.value)} {cancelled.job_id}")


def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends")
    ] = False,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's captured stdout/stderr."""
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        if not follow:
            text = client.logs(job_id)
            if opts.as_json:
                _print_json({"job_id": job_id, "logs": text})
            else:
                sys.stdout.write(text)
            return
        shown, current = "", None
        for current in client.watch(job_id, every=1.0):  # noqa: B007 - the last one counts
            text = client.logs(job_id)
            if text.startswith(shown):
                sys.stdout.write(text[len(shown) :])
            else:  # the job started over (rescued after a lost worker): its log did too
                sys.stdout.write(f"\n--- log of a new attempt ---\n{text}")
            sys.stdout.flush()
            shown = text
        assert current is not None
        code = _exit_for(current)
    raise typer.Exit(code)


def models(ctx: typer.Context, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """List trained models."""
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        rows = client.models()
    if opts.as_json:
        _print_json({"models": rows})
        return
    table = Table(title=f"{len(rows)} models", title_justify="left")
    for name in ("MODEL", "TYPE", "FRAMEWORK", "QUEUE", "METRICS", "CREATED"):
        table.add_column(name, no_wrap=name in {"MODEL", "CREATED"})
    for m in rows:
        framework = " ".join(str(p) for p in (m["framework"], m.get("framework_version")) if p)
        table.add_row(
            escape(m["model_id"]),
            escape(m["model_type"]),
            escape(framework),
            escape(m["queue"]),
            _metrics(m.get("metrics"), limit=2),
            str(m.get("created_at") or ""),
        )
    _out().print(table)


def queues(ctx: typer.Context, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """List queues: depth, and the live workers serving each."""
    opts = _opts(ctx, url, as_json)
    with _client(opts) as client:
        rows = client.queues()
    if opts.as_json:
        _print_json({"queues": rows})
        return
    table = Table(title="queues", title_justify="left")
    for name in ("QUEUE", "FRAMEWORK", "GPU", "PENDING", "RUNNING", "WORKERS"):
        table.add_column(name, no_wrap=True)
    for q in rows:
        workers = len(q["workers"])
        table.add_row(
            escape(q["queue"]),
            escape(q.get("label", "")),
            "yes" if q.get("gpu") else "no",
            str(q["pending"]),
            str(q["running"]),
            f"[green]{workers}[/]" if workers else "[yellow]none[/]",
        )
    _out().print(table)


def register(app: typer.Typer) -> None:
    """Add the job commands and the global --url/--json options to the `aijobs` app."""
    app.callback()(global_options)
    app.add_typer(submit_app, name="submit")
    app.command()(status)
    app.command()(wait)
    app.command("list")(list_jobs)
    app.command()(cancel)
    app.command()(logs)
    app.command()(models)
    app.command()(queues)
