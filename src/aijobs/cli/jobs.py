"""The job commands of the `aijobs` command line: submit, status, wait, list, cancel, logs, ...

They talk to a running API through the SDK; options and exit codes: `aijobs.cli.options`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aijobs.cli.options import (
    INTERRUPTED,
    UNAVAILABLE,
    USAGE,
    JsonOpt,
    Opts,
    UrlOpt,
    global_options,
    opts_for,
    parse_pairs,
)
from aijobs.cli.output import (
    exit_for,
    follow,
    metrics_line,
    print_json,
    show_status,
    stderr_console,
    stdout_console,
    styled_state,
)
from aijobs.jobs import State

if TYPE_CHECKING:  # the SDK (and the API schemas it reuses) load only when a command runs
    from aijobs.api.schemas import SubmitResponse
    from aijobs.client import Client


@contextlib.contextmanager
def api_client(opts: Opts) -> Iterator[Client]:
    """A client; API errors become a message on stderr and the documented exit code."""
    from aijobs.client import APIConnectionError, APIError, Client

    try:
        with Client(opts.url, api_key=opts.api_key) as client:
            yield client
    except APIError as exc:
        code = USAGE if exc.status_code is not None and exc.status_code < 500 else UNAVAILABLE
        if opts.as_json:
            envelope = {"error": exc.error, "detail": exc.detail, "status_code": exc.status_code}
            typer.echo(json.dumps(envelope), err=True)
        else:
            err = stderr_console()
            err.print(f"[red]error:[/] {escape(exc.error)}: {escape(exc.detail)}")
            if isinstance(exc, APIConnectionError):
                err.print("is the API running? start it with `aijobs up` (or `make run`)")
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        stderr_console().print(
            "interrupted: the job, if any, keeps running (`aijobs cancel JOB` stops it)"
        )
        raise typer.Exit(INTERRUPTED) from None


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
    opts = opts_for(ctx, url, as_json)
    hyperparameters = parse_pairs(hp, "--hp")
    with api_client(opts) as client:
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
    opts = opts_for(ctx, url, as_json)
    parameters = parse_pairs(param, "--param")
    if input_data == "-":
        input_data = sys.stdin.read()
    with api_client(opts) as client:
        accepted = client.submit_inference(
            model, input_data, parameters, priority=priority, timeout_seconds=timeout
        )
        _submitted(client, accepted, wait, opts)


def _submitted(client: Client, accepted: SubmitResponse, wait: bool, opts: Opts) -> None:
    if opts.as_json and not wait:
        print_json(accepted.model_dump(mode="json"))
    elif not opts.as_json:
        worker = "" if accepted.queue_has_worker else " [yellow](no live worker yet)[/]"
        stdout_console().print(
            f"submitted {accepted.job_id} to queue {escape(accepted.queue)}{worker}, "
            f"estimated {accepted.estimated_duration}"
        )
        if accepted.message:
            stderr_console().print(f"[yellow]note:[/] {escape(accepted.message)}")
    if wait:
        raise typer.Exit(follow(client, accepted.job_id, None, opts.as_json))


def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a job's status, progress, metrics and result."""
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        current = client.status(job_id)
    if opts.as_json:
        print_json(current.model_dump(mode="json"))
    else:
        show_status(current)


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
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        code = follow(client, job_id, timeout, opts.as_json)
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
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        page = client.list_page(state, limit, offset)
    if opts.as_json:
        print_json(page.model_dump(mode="json", exclude_unset=True))
        return
    table = Table(title=f"{len(page.jobs)} of {page.total} jobs", title_justify="left")
    for name in ("JOB", "TYPE", "STATUS", "QUEUE", "MODEL", "PROGRESS", "CREATED"):
        table.add_column(name, no_wrap=name in {"JOB", "STATUS", "CREATED"})
    for row in page.jobs:
        table.add_row(
            row.job_id,
            row.job_type.value,
            styled_state(row.status.value),
            escape(row.queue),
            escape(row.model_type or row.model_id or ""),
            f"{row.progress:.0%}",
            row.created_at,
        )
    stdout_console().print(table)


def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a pending or running job (a running job's process is killed)."""
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        cancelled = client.cancel(job_id)
    if opts.as_json:
        print_json(cancelled.model_dump(mode="json"))
    else:
        stdout_console().print(f"{styled_state(cancelled.status.value)} {cancelled.job_id}")


def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print its output as it is written, until the job ends"
        ),
    ] = False,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's captured stdout/stderr."""
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        if not follow:
            text = client.logs(job_id)
            if opts.as_json:
                print_json({"job_id": job_id, "logs": text})
            else:
                sys.stdout.write(text)
            return
        from aijobs.client import apply_event

        # The job's events: its output as it is written, then its final state.
        final = None
        for event in client.events(job_id):
            if event.event == "log":
                sys.stdout.write(event.data["text"])
                sys.stdout.flush()
            elif event.final:
                final = apply_event(None, event)
        assert final is not None
        code = exit_for(final)
    raise typer.Exit(code)


def models(ctx: typer.Context, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """List trained models."""
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        rows = client.models()
    if opts.as_json:
        print_json({"models": rows})
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
            metrics_line(m.get("metrics"), limit=2),
            str(m.get("created_at") or ""),
        )
    stdout_console().print(table)


def queues(ctx: typer.Context, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """List queues: depth, and the live workers serving each."""
    opts = opts_for(ctx, url, as_json)
    with api_client(opts) as client:
        rows = client.queues()
    if opts.as_json:
        print_json({"queues": rows})
        return
    table = Table(title="queues", title_justify="left")
    for name in ("QUEUE", "FRAMEWORK", "GPU", "PENDING", "RUNNING", "OLDEST", "WORKERS"):
        table.add_column(name, no_wrap=True)
    for q in rows:
        workers = len(q["workers"])
        table.add_row(
            escape(q["queue"]),
            escape(q.get("label", "")),
            "yes" if q.get("gpu") else "no",
            str(q["pending"]),
            str(q["running"]),
            "" if q.get("oldest_wait_seconds") is None else f"{q['oldest_wait_seconds']:.0f}s",
            f"[green]{workers}[/]" if workers else "[yellow]none[/]",
        )
    stdout_console().print(table)


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
