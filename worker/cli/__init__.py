"""The `scandigits` command line: the typer app, its commands in order, and `main`.

Every setting comes from an environment variable and can be overridden by its flag; the limits
no flag sets (worker.settings) are read and checked as any command starts. The commands live in
modules by job: models (train, models, evaluate), batches (submit, status, resume, results,
review, watch, batches), workers (worker), service (serve, token) and tools (predict, samples,
demo, template); the options they share in `options`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys

import typer

from trainer import say
from trainer.errors import UserError
from worker import settings
from worker.cli import batches, models, service, tools, workers

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Read handwritten digits from scanned batches on a Celery/Redis cluster.",
)


@app.callback()
def _read_settings() -> None:
    """Read and check the settings as any command starts: a bad value stops it in one line,
    before it does anything (the app's help is Typer's `help`, not this)."""
    settings.current()


# The commands, in the order `scandigits --help` lists them.
app.command()(models.train)
app.add_typer(models.models_app, name="models")
app.command()(batches.submit)
app.command()(batches.status)
app.command()(batches.resume)
app.command()(batches.results)
app.command()(models.evaluate)
app.command()(batches.review)
app.command()(workers.worker)
app.command()(batches.watch)
app.add_typer(batches.batches_app, name="batches")
app.command()(service.serve)
app.add_typer(service.token_app, name="token")
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
