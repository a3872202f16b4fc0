"""Options and exit codes shared by the job commands, and parsing of their KEY=VALUE pairs.

The job commands talk to a running API through the SDK (`--url`, else $AIJOBS_URL, else
localhost:8000). Exit codes, for scripts:

    0  done: the command worked (and a waited-for job completed)
    1  the job failed or was cancelled (wait, submit --wait, logs -f)
    2  usage or validation error: bad options, or the API answered 4xx (unknown job, bad input)
    3  the API is unreachable (after retries) or answered 5xx
    4  wait --timeout ran out while the job was still pending or running
  130  interrupted (Ctrl-C); a job being waited for keeps running (`aijobs cancel` stops it)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Annotated, Any

import typer

OK, JOB_FAILED, USAGE, UNAVAILABLE, TIMED_OUT, INTERRUPTED = 0, 1, 2, 3, 4, 130

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
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="AIJOBS_API_KEY",
        show_envvar=False,
        help="API key or token, for an API that requires credentials \\[env: AIJOBS_API_KEY]",
    ),
]


@dataclass
class Opts:
    url: str
    as_json: bool
    api_key: str | None = None


def opts_for(ctx: typer.Context, url: str | None, as_json: bool) -> Opts:
    parent = ctx.find_object(Opts)
    return Opts(
        url=url or (parent.url if parent else default_url()),
        as_json=as_json or bool(parent and parent.as_json),
        api_key=parent.api_key if parent else None,
    )


def global_options(
    ctx: typer.Context,
    url: GlobalUrlOpt = None,
    as_json: JsonOpt = False,
    api_key: ApiKeyOpt = None,
) -> None:
    """aijobs: an HTTP job queue for machine-learning work."""
    ctx.obj = Opts(url=url or default_url(), as_json=as_json, api_key=api_key)


def default_url() -> str:
    return os.environ.get("AIJOBS_URL") or "http://localhost:8000"


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
