"""Batch commands: submit scans, follow and resume a batch, print or review its results, watch
an inbox that submits what lands in it, and list or delete a tenant's batches (`batches`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from trainer import say
from trainer.errors import UserError
from trainer.storage import Store
from worker import settings
from worker.cli.options import (
    DEFAULT_BROKER,
    DEFAULT_STORE,
    BrokerUrl,
    ChunkSize,
    FormTemplate,
    LogLevel,
    ModelVersion,
    ReviewBelow,
    StoreUrl,
    checked_store,
)
from worker.results import REVIEW_BELOW


def submit(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders, or store URLs")],
    wait: Annotated[bool, typer.Option(help="Show progress and wait for the results")] = False,
    model: ModelVersion = None,
    chunk_size: ChunkSize = 128,
    review_threshold: ReviewBelow = REVIEW_BELOW,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds (0: never)")
    ] = 0,
    template: FormTemplate = None,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Submit a batch; print its id on stdout."""
    from tqdm import tqdm

    from worker import batches, queue
    from worker.forms import templates

    form = templates.load(template) if template else None
    queue.connect(broker)
    target = checked_store(store)
    with tqdm(desc="uploading", unit="img", file=sys.stderr, leave=False) as bar:
        batch_id = batches.submit(
            target, paths, model, chunk_size, review_threshold, bar.update, form
        )
    typer.echo(batch_id)
    if wait:
        raise typer.Exit(_wait(target, batch_id, timeout))


def _wait(store: Store, batch_id: str, timeout: float = 0) -> int:
    """Wait for a batch with a progress bar on stderr; return the exit code."""
    from tqdm import tqdm

    from worker import batches

    total = batches.manifest(store, batch_id).images
    with tqdm(total=total, desc=batch_id, unit="img", file=sys.stderr) as bar:
        try:
            report = batches.wait(store, batch_id, timeout, lambda done: bar.update(done - bar.n))
        except TimeoutError:
            say(
                f"batch {batch_id} did not finish within {timeout:g} s; "
                f"check the workers, then `scandigits status {batch_id}`"
            )
            return 1
    say(f"done: {report['images']} images, {report['errors']} errors; {report['results']}")
    return 0


def status(
    batch: str,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Print a batch's progress as JSON; "stalled" lists chunks the queue has lost."""
    from worker import batches, queue

    target = checked_store(store)
    manifest = batches.manifest(target, batch)
    try:
        queue.connect(broker)
    except UserError as exc:  # the store alone still tells the progress
        report = {**batches.status(target, manifest), "broker": f"not checked: {exc}"}
    else:
        report = batches.status(target, manifest, broker=True)
    typer.echo(json.dumps(report, indent=2))


def resume(
    batch: str,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Re-queue a batch's chunks that have no results and that no live worker holds (workers
    do this by themselves; this is for when none is running)."""
    from worker import batches, queue

    queue.connect(broker)
    lost = batches.resume(checked_store(store), batch)
    say(f"re-queued {len(lost)} chunks: {lost}" if lost else "nothing to re-queue")


def results(
    batch: str,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Print a finished batch's results."""
    from worker import batches

    if fmt not in ("jsonl", "csv"):
        raise UserError("--format must be jsonl or csv")
    sys.stdout.buffer.write(batches.result_file(checked_store(store), batch, fmt))


def review(
    batch: str,
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("review.png"),
    limit: Annotated[int, typer.Option(min=1, help="At most this many results")] = 500,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Write a contact sheet of a batch's results that need review."""
    import cv2

    from worker import batches
    from worker import review as sheet
    from worker.forms import templates

    target = checked_store(store)
    records, total = sheet.to_review(target, batch)
    if not records:
        say(f"none of the {total} results of batch {batch} needs review")
        return
    form = batches.manifest(target, batch).template
    form = templates.Template.from_dict(form) if form else None
    _, png = cv2.imencode(".png", sheet.batch_sheet(target, records[:limit], form))
    try:
        out.write_bytes(png.tobytes())
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from exc
    say(f"wrote {out}: {min(len(records), limit)} of {len(records)} results to review (of {total})")


def watch(
    url: Annotated[
        str,
        typer.Argument(
            envvar="SCANDIGITS_INBOX",
            metavar="URL",
            help="The inbox: a prefix inside the store, as a URL",
        ),
    ],
    template: FormTemplate = None,
    batch_size: Annotated[
        int,
        typer.Option(envvar="SCANDIGITS_WATCH_BATCH_SIZE", min=1, help="Objects per batch"),
    ] = 100,
    max_age: Annotated[
        float,
        typer.Option(
            envvar="SCANDIGITS_WATCH_MAX_AGE",
            min=0,
            help="Submit fewer objects once the oldest has waited this many seconds",
        ),
    ] = 30,
    interval: Annotated[
        float,
        typer.Option(envvar="SCANDIGITS_WATCH_INTERVAL", min=0.05, help="Seconds between polls"),
    ] = 2,
    results: Annotated[
        str | None,
        typer.Option(
            envvar="SCANDIGITS_WATCH_RESULTS",
            help="Prefix URL in the store for each finished batch's <id>.jsonl and <id>.csv "
            "(default: results/ beside the inbox)",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Submit what waits now, wait for it to finish, exit")
    ] = False,
    model: ModelVersion = None,
    chunk_size: ChunkSize = 128,
    review_threshold: ReviewBelow = REVIEW_BELOW,
    log_level: LogLevel = "INFO",
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Submit scans as they land in an inbox, each exactly once, and collect their results.

    Any number of watchers may watch one inbox; a group of scans whose watcher died is taken
    over once its lease (SCANDIGITS_WATCH_LEASE, 60 s) lapses.
    """
    import logging
    import signal
    import threading

    import redis

    from worker import inbox, queue
    from worker.forms import templates

    if log_level.upper() not in logging.getLevelNamesMapping():
        raise UserError(f"unknown log level {log_level!r}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("worker").setLevel(log_level.upper())
    form = templates.load(template) if template else None
    queue.connect(broker)
    watcher = inbox.Watcher(
        checked_store(store),
        url,
        redis.Redis.from_url(broker, socket_timeout=10),
        results=results,
        batch_size=batch_size,
        max_age=max_age,
        model=model,
        chunk_size=chunk_size,
        review_below=review_threshold,
        template=form,
        lease=settings.current().watch_lease,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the step in hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    say(f"watching {url}; results to {watcher.results_url}")
    watcher.run(interval, stop, once)
    say("stopped" if stop.is_set() else "done")


batches_app = typer.Typer(
    no_args_is_help=True,
    help="A tenant's batches, as the HTTP API lists and deletes them; expire old ones.",
)
Tenant = Annotated[
    str | None,
    typer.Option(
        help="The tenant [default: the batches submitted without one, by submit and watch]"
    ),
]


@batches_app.command("list")
def batches_list(
    tenant: Tenant = None,
    state: Annotated[str | None, typer.Option(help="Only those queued, running or done")] = None,
    name: Annotated[str | None, typer.Option(help="Only those of this name")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="The next_cursor of the page before: older batches")
    ] = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Print a page of a tenant's batches as JSON, newest first, with the cursor of the next."""
    from worker import batches

    if state not in (None, "queued", "running", "done"):
        raise UserError("--state must be queued, running or done")
    reports, after = batches.listing(checked_store(store), tenant, limit, cursor, state, name)
    typer.echo(json.dumps({"batches": reports, "next_cursor": after}, indent=2))


@batches_app.command("delete")
def batches_delete(
    batch: str,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Delete a batch: take what is queued of it off the queue, delete its uploaded inputs and
    its results."""
    from worker import batches, queue

    queue.connect(broker)
    batches.delete(checked_store(store), batch)
    say(f"deleted batch {batch}")


@batches_app.command("expire")
def batches_expire(store: StoreUrl = DEFAULT_STORE, broker: BrokerUrl = DEFAULT_BROKER) -> None:
    """Delete what the retention settings say has been kept long enough: the inputs of batches
    finished SCANDIGITS_RETAIN_INPUTS_DAYS ago, whole batches SCANDIGITS_RETAIN_BATCHES_DAYS
    ago (`scandigits serve` does this hourly)."""
    from worker import queue, retention

    queue.connect(broker)
    expired = retention.expire(checked_store(store))
    say(f"deleted the inputs of {expired.inputs} batches and {expired.batches} whole batches")
