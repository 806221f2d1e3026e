"""The `scandigits` command line: the typer app, the options its commands share, and `main`.

Every setting comes from an environment variable and can be overridden by its flag; the limits
no flag sets (worker.settings) are read and checked as any command starts. The commands live in
modules by job: models (train, models, evaluate), batches (submit, status, resume, results,
review, watch), workers (worker) and tools (predict, samples, demo, template).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys
from pathlib import Path
from typing import Annotated

import typer

from trainer import say
from trainer.errors import UserError
from trainer.storage import Store, open_store
from worker import settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Read handwritten digits from scanned batches on a Celery/Redis cluster.",
)

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
DEFAULT_STORE = "file://./scandigits-data"
DEFAULT_BROKER = "redis://localhost:6379/0"


def checked_store(url: str) -> Store:
    """The store at `url`, once it answers (else a one-line UserError)."""
    store = open_store(url)
    store.check()
    return store


@app.callback()
def _read_settings() -> None:
    """Read and check the settings as any command starts: a bad value stops it in one line,
    before it does anything (the app's help is Typer's `help`, not this)."""
    settings.current()


# The commands, in the order `scandigits --help` lists them; their modules use what is above.
from worker.cli import batches, models, tools, workers  # noqa: E402

app.command()(models.train)
app.command("models")(models.list_models)
app.command()(batches.submit)
app.command()(batches.status)
app.command()(batches.resume)
app.command()(batches.results)
app.command()(models.evaluate)
app.command()(batches.review)
app.command()(workers.worker)
app.command()(batches.watch)
app.command()(tools.predict)
app.command()(tools.samples)
app.command()(tools.demo)
app.add_typer(tools.template_app, name="template")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except UserError as exc:
        say(f"error: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
