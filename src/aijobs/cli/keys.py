"""`aijobs keys`: create, list and revoke API keys, in the store itself (AIJOBS_STORE_URL), like
an operator's tool: no API needs to run, and every API process sees a change at its next request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from aijobs.cli.options import USAGE, JsonOpt
from aijobs.cli.server import load_settings, store_errors
from aijobs.store import JobStore

T = TypeVar("T")

keys_app = typer.Typer(
    help="API keys (kept in the store as SHA-256 digests; a key is shown once, when created).",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The key's name (its principal is key:NAME)")]


def _with_store(action: Callable[[JobStore], Awaitable[T]]) -> T:
    from aijobs.store import open_store

    settings = load_settings()

    async def run() -> T:
        store = open_store(settings.resolved_store_url, settings=settings)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    with store_errors():
        return asyncio.run(run())


@keys_app.command()
def create(
    name: NameArg,
    admin: Annotated[bool, typer.Option("--admin", help="May see and cancel every job")] = False,
) -> None:
    """Create a key and print it (stdout, once: only its digest is stored)."""
    from aijobs import apikeys, errors

    if not name.strip() or any(not c.isprintable() for c in name):
        typer.echo("error: a key's name must be printable and not empty", err=True)
        raise typer.Exit(USAGE)
    secret = apikeys.new_key()
    record = apikeys.ApiKey(
        name=name,
        key_hash=apikeys.hash_key(secret),
        admin=admin,
        created_at=datetime.now(UTC).timestamp(),
    )
    try:
        _with_store(lambda store: store.create_key(record))
    except errors.KeyNameTaken as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(USAGE) from None
    typer.echo(secret)
    typer.echo(f"key {name!r} created; keep it now, it is not shown again", err=True)


@keys_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """The keys: name, role and creation time (never the keys themselves)."""
    found = _with_store(lambda store: store.list_keys())
    rows = [
        {
            "name": k.name,
            "admin": k.admin,
            "created_at": datetime.fromtimestamp(k.created_at, UTC).isoformat(timespec="seconds"),
        }
        for k in found
    ]
    if as_json:
        typer.echo(json.dumps({"keys": rows}))
        return
    for row in rows:
        role = "admin" if row["admin"] else "user"
        typer.echo(f"{row['name']}\t{role}\t{row['created_at']}")


@keys_app.command()
def revoke(name: NameArg) -> None:
    """Revoke a key: every API process refuses it from its next request on."""
    if not _with_store(lambda store: store.revoke_key(name)):
        typer.echo(f"error: no API key named {name!r}", err=True)
        raise typer.Exit(USAGE)
    typer.echo(f"key {name!r} revoked", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
