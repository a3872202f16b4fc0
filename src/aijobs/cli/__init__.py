"""The `aijobs` command line.

The server commands (serve, worker, up, demo-data) live in `aijobs.cli.server`; the job commands
(submit, status, wait, list, cancel, logs, models, queues), which talk to a running API, in
`aijobs.cli.jobs`; `aijobs keys` (API keys, in the store) in `aijobs.cli.keys`.
"""

from __future__ import annotations

import typer

from aijobs.cli import jobs, keys, server

app = typer.Typer(help="aijobs: an HTTP job queue for machine-learning work.", no_args_is_help=True)
server.register(app)
jobs.register(app)  # and the global --url, --json and --api-key options
keys.register(app)

__all__ = ["app"]
