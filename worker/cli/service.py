"""Service commands: `serve` the HTTP API, and the `token` commands that make, list and revoke
its bearer tokens. FastAPI and uvicorn are imported by `serve` alone."""

from __future__ import annotations

from typing import Annotated

import typer

from trainer import say
from trainer.errors import UserError
from worker.cli.options import (
    DEFAULT_BROKER,
    DEFAULT_STORE,
    BrokerUrl,
    ChunkSize,
    LogLevel,
    ReviewBelow,
    StoreUrl,
    checked_store,
)
from worker.results import REVIEW_BELOW


def serve(
    host: Annotated[
        str, typer.Option(envvar="SCANDIGITS_API_HOST", help="Address to listen on")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="SCANDIGITS_API_PORT", min=1, max=65535, help="Port to listen on")
    ] = 8000,
    chunk_size: ChunkSize = 128,
    review_threshold: ReviewBelow = REVIEW_BELOW,
    log_level: LogLevel = "INFO",
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Serve the HTTP API in one process (its reference: /docs); `--chunk-size` and
    `--review-threshold` are the defaults of the batches it takes. Each token's requests and
    uploaded bytes a minute are limited by SCANDIGITS_API_REQUESTS_PER_MINUTE and
    SCANDIGITS_API_BYTES_PER_MINUTE, in this process."""
    import logging

    import uvicorn

    from worker import queue, settings
    from worker.api import app
    from worker.api.dependencies import Service
    from worker.api.ratelimit import RateLimit

    if log_level.upper() not in logging.getLevelNamesMapping():
        raise UserError(f"unknown log level {log_level!r}")
    queue.connect(broker)
    limits = settings.current()
    rate_limit = RateLimit(limits.api_requests_per_minute, limits.api_bytes_per_minute)
    service = Service(checked_store(store), broker, chunk_size, review_threshold, rate_limit)
    uvicorn.run(
        app.create(service),
        host=host,
        port=port,
        log_level=log_level.lower(),
        server_header=False,
    )


token_app = typer.Typer(
    no_args_is_help=True,
    help="Bearer tokens of the HTTP API: create, list, revoke; their webhook secrets.",
)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="The token's name, to list and revoke it by")],
    scope: Annotated[
        list[str], typer.Option(help="submit, read, review or admin (all); repeat for more")
    ],
    tenant: Annotated[
        str | None,
        typer.Option(help="The tenant it acts for: the batches it sees [default: its name]"),
    ] = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Create a token and print it, alone on stdout: it is shown this once (the store keeps
    only its sha256)."""
    from worker.api import tokens

    token, secret = tokens.create(checked_store(store), name, scope, tenant)
    typer.echo(secret)
    say(f"token {token.name!r} for tenant {token.tenant!r}, scopes {', '.join(token.scopes)}")
    say(f"the secret its webhooks are signed with: scandigits token secret {token.name}")


@token_app.command("list")
def token_list(store: StoreUrl = DEFAULT_STORE) -> None:
    """List the tokens not revoked: name, tenant, scopes, created (never a secret)."""
    from worker.api import tokens

    for token in tokens.listing(checked_store(store)):
        typer.echo(f"{token.name}\t{token.tenant}\t{','.join(token.scopes)}\t{token.created}")


@token_app.command("secret")
def token_secret(
    name: Annotated[str, typer.Argument(help="The token's name")],
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Print the secret the webhooks of the token's batches are signed with, for their
    receiver (see docs/api.md)."""
    from worker.api import tokens

    checked = checked_store(store)
    for token in tokens.named(checked, name):
        typer.echo(tokens.signing_secret(checked, token.id))


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name")],
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Revoke a token: the service refuses it from its next request on."""
    from worker.api import tokens

    tokens.revoke(checked_store(store), name)
    say(f"revoked token {name!r}")
