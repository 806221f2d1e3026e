"""The options the `scandigits` commands share, each with its environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainer.storage import Store, open_store

StoreUrl = Annotated[
    str,
    typer.Option("--store", envvar="SCANDIGITS_STORE", help="file:///path or s3://bucket/prefix"),
]
BrokerUrl = Annotated[
    str, typer.Option("--broker", envvar="SCANDIGITS_BROKER_URL", help="Redis URL of the queue")
]
ModelVersion = Annotated[
    str | None, typer.Option("--model", help="Model version (default: current)")
]
MnistData = Annotated[
    str | None,
    typer.Option(envvar="SCANDIGITS_MNIST_DIR", help="MNIST folder (IDX .gz) or mnist.npz"),
]
WritersData = Annotated[
    str | None,
    typer.Option(
        "--writers",
        envvar="SCANDIGITS_WRITERS_DIR",
        help="Folder of other writers' digits (USPS, optdigits, Semeion digits.npz)",
    ),
]
ChunkSize = Annotated[
    int, typer.Option(envvar="SCANDIGITS_CHUNK_SIZE", min=1, help="Images per task")
]
ReviewBelow = Annotated[
    float,
    typer.Option(
        envvar="SCANDIGITS_REVIEW_THRESHOLD",
        min=0.0,
        max=1.0,
        help="Mark results below this confidence needs_review",
    ),
]
FormTemplate = Annotated[
    Path | None,
    typer.Option(
        "--template",
        envvar="SCANDIGITS_TEMPLATE",
        help="Form template (YAML): read each page as that form, one column per field",
    ),
]
LogLevel = Annotated[str, typer.Option(envvar="SCANDIGITS_LOG_LEVEL", help="Log level")]
DEFAULT_STORE = "file://./scandigits-data"
DEFAULT_BROKER = "redis://localhost:6379/0"


def checked_store(url: str) -> Store:
    """The store at `url`, once it answers (else a one-line UserError)."""
    store = open_store(url)
    store.check()
    return store
