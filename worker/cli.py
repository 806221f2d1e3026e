"""The `scandigits` command line: train, models, submit, status, results, worker, predict, demo.

Every setting comes from an environment variable and can be overridden by its flag.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from trainer import say
from trainer.errors import UserError
from trainer.storage import Store, open_store
from worker.results import REVIEW_BELOW

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
TimeLimit = Annotated[
    int,
    typer.Option(
        envvar="SCANDIGITS_TASK_TIME_LIMIT",
        min=10,
        help="Seconds a chunk may run before its worker process is killed (soft limit: 90%); "
        "a chunk delivered longer ago than this without results belongs to a dead worker",
    ),
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


def _open(url: str) -> Store:
    store = open_store(url)
    store.check()
    return store


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Architecture: cnn, or mlp (the seed model)")] = "cnn",
    data: MnistData = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: the recipe's")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Default: the recipe's")] = None,
    limit: Annotated[
        int | None, typer.Option(min=100, help="Train on the first N images only (smoke runs)")
    ] = None,
    promote: Annotated[
        str, typer.Option(help="Move `current` to the new version: always|if-better|never")
    ] = "if-better",
    seed: int = 0,
    writers: WritersData = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Train a model on MNIST (adapted to other writers' digits, if given) and publish it."""
    from trainer import models, registry
    from trainer import train as trainer
    from worker.reading import lines

    if model not in models.RECIPES:
        raise UserError(f"unknown model {model!r}; choose from {', '.join(models.RECIPES)}")
    if promote not in registry.PROMOTE:
        raise UserError(f"--promote must be one of {', '.join(registry.PROMOTE)}")
    meta = trainer.run(
        open_store(store),
        model,
        data,
        promote,
        epochs=epochs,
        batch_size=batch_size,
        limit=limit,
        seed=seed,
        scanned=lines.scanned,
        writers=writers,
    )
    state = "now current" if meta["promoted"] else "not promoted"
    typer.echo(
        f"model v{meta['version']} ({model}): test accuracy {meta['test_accuracy']:.4f}, "
        f"train accuracy {meta['train_accuracy']:.4f}, {meta['training_seconds']:.0f} s, {state}"
    )


@app.command("models")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print metadata as JSON")] = False,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """List published model versions; * marks current."""
    from trainer import registry

    target = _open(store)
    versions = registry.versions(target)
    current = registry.current_version(target)
    if as_json:
        typer.echo(json.dumps([{**m, "current": m["version"] == current} for m in versions]))
        return
    if not versions:
        say(f"no models in {target.url}; run `scandigits train`")
        return
    typer.echo(f"  {'version':>7}  {'model':<6} {'test acc':>8} {'train acc':>9}  created")
    for m in versions:
        mark = "*" if m["version"] == current else " "
        typer.echo(
            f"{mark} {m['version']:>7}  {m['architecture']:<6} {m['test_accuracy']:>8.4f} "
            f"{m['train_accuracy']:>9.4f}  {m['created']}"
        )


@app.command()
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
    target = _open(store)
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

    total = batches.manifest(store, batch_id)["images"]
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


@app.command()
def status(
    batch: str,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Print a batch's progress as JSON; "stalled" lists chunks the queue has lost."""
    from worker import batches, queue

    target = _open(store)
    manifest = batches.manifest(target, batch)
    try:
        queue.connect(broker)
    except UserError as exc:  # the store alone still tells the progress
        report = {**batches.status(target, manifest), "broker": f"not checked: {exc}"}
    else:
        report = batches.status(target, manifest, broker=True)
    typer.echo(json.dumps(report, indent=2))


@app.command()
def resume(
    batch: str,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Re-queue a batch's chunks that have no results and that no live worker holds (workers
    do this by themselves; this is for when none is running)."""
    from worker import batches, queue

    queue.connect(broker)
    lost = batches.resume(_open(store), batch)
    say(f"re-queued {len(lost)} chunks: {lost}" if lost else "nothing to re-queue")


@app.command()
def results(
    batch: str,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Print a finished batch's results."""
    from worker import batches

    if fmt not in ("jsonl", "csv"):
        raise UserError("--format must be jsonl or csv")
    sys.stdout.buffer.write(batches.result_file(_open(store), batch, fmt))


@app.command()
def evaluate(
    model: ModelVersion = None,
    scans: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of scans with labels.json (name -> digits); repeat for more"),
    ] = None,
    data: MnistData = None,
    review_threshold: ReviewBelow = REVIEW_BELOW,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Score a model on MNIST test (and scans); store figures and a report with the model."""
    from worker import evaluate as evaluation

    report = evaluation.run(_open(store), model, data, scans or [], review_threshold)
    typer.echo(f"model v{report['model']} ({report['architecture']})")
    parts = {"mnist": report["mnist"], **report.get("scans", {})}
    for name, part in parts.items():
        typer.echo(f"{name}: accuracy {part['accuracy']:.4f} on {part['items']} items")
        for kind in ("single_digit", "field"):
            value = part.get(f"{kind}_accuracy") if name != "mnist" else None
            if value is not None:
                typer.echo(f"  {kind.replace('_', ' ')} accuracy {value:.4f}")
        if name != "mnist":
            typer.echo(
                f"  digit recall {part['digit_recall']:.4f}; not sent to review "
                f"{part['not_sent_to_review']}, of them wrong {part['wrong_not_sent_to_review']}"
            )
        classes = part["per_class"].items()
        typer.echo("  class     " + " ".join(f"{k:>6}" for k, _ in classes))
        for metric in ("precision", "recall"):
            cells = " ".join(
                f"{v[metric]:>6.3f}" if v[metric] is not None else f"{'-':>6}" for _, v in classes
            )
            typer.echo(f"  {metric:<9} {cells}")
    for name, url in report["figures"].items():
        typer.echo(f"{name}: {url}")


@app.command()
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

    target = _open(store)
    records, total = sheet.to_review(target, batch)
    if not records:
        say(f"none of the {total} results of batch {batch} needs review")
        return
    form = batches.manifest(target, batch).get("template")
    form = templates.Template.from_dict(form) if form else None
    _, png = cv2.imencode(".png", sheet.batch_sheet(target, records[:limit], form))
    try:
        out.write_bytes(png.tobytes())
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from exc
    say(f"wrote {out}: {min(len(records), limit)} of {len(records)} results to review (of {total})")


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            envvar="SCANDIGITS_CONCURRENCY",
            min=1,
            help="Worker processes [default: the container's CPUs]",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="SCANDIGITS_LOG_LEVEL")] = "INFO",
    time_limit: TimeLimit = 600,
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="SCANDIGITS_METRICS_PORT",
            min=0,
            max=65535,
            help="Port for /metrics, /livez and /readyz (0: none)",
        ),
    ] = 9100,
    store: StoreUrl = DEFAULT_STORE,
    broker: BrokerUrl = DEFAULT_BROKER,
) -> None:
    """Run a Celery worker that reads chunks of images from the queue."""
    # before anything imports prometheus-client: pool processes write metrics to files here
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="scandigits-metrics-")
    )
    from worker import metrics
    from worker.queue import app as celery
    from worker.queue import connect, ping
    from worker.reading import inference

    inference.trusted_models()  # a bad list fails here in one line, not image by image
    concurrency = concurrency or inference.cpu_limit()
    connect(broker)
    target = _open(store)
    celery.conf.update(
        scandigits_store=target.url,
        worker_concurrency=concurrency,
        task_time_limit=time_limit,
        task_soft_time_limit=int(0.9 * time_limit),
        # Redis hands a delivery unacknowledged this long to another worker: never while a
        # chunk can still be running (dead workers' chunks are found sooner: worker.recovery)
        broker_transport_options={"visibility_timeout": max(3600, 2 * time_limit)},
    )

    def ready() -> str | None:
        from trainer import registry

        try:
            ping(broker)
            registry.resolve(target)
        except UserError as exc:
            return str(exc)
        return None

    if metrics_port:
        try:
            metrics.serve(metrics_port, ready)
        except OSError as exc:
            raise UserError(f"cannot serve metrics on port {metrics_port}: {exc.strerror}") from exc
    celery.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={log_level}",
            f"--hostname=scandigits-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
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
    log_level: Annotated[str, typer.Option(envvar="SCANDIGITS_LOG_LEVEL")] = "INFO",
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
        _open(store),
        url,
        redis.Redis.from_url(broker, socket_timeout=10),
        results=results,
        batch_size=batch_size,
        max_age=max_age,
        model=model,
        chunk_size=chunk_size,
        review_below=review_threshold,
        template=form,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the step in hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    say(f"watching {url}; results to {watcher.results_url}")
    watcher.run(interval, stop, once)
    say("stopped" if stop.is_set() else "done")


@app.command()
def predict(
    files: Annotated[list[Path], typer.Argument(help="Image files")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per file")] = False,
    model: ModelVersion = None,
    review_threshold: ReviewBelow = REVIEW_BELOW,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Read local images in-process (no queue). Exit 1 if any file could not be read."""
    from worker import results
    from worker.reading import inference, pipeline

    classifier = inference.classifier(_open(store), model)
    readings, _ = pipeline.read(files, Path.read_bytes, classifier)
    for file, reading in zip(files, readings, strict=True):
        record = results.record(str(file), None, reading, classifier.version, review_threshold)
        if as_json:
            typer.echo(json.dumps(record))
        elif reading.error:
            typer.echo(f"{file}\terror: {reading.error}")
        else:
            typer.echo(f"{file}\t{reading.text}\t{reading.confidence:.3f}")
    if any(r.error for r in readings):
        raise typer.Exit(1)


@app.command()
def samples(
    out: Annotated[Path, typer.Argument(help="Folder to write the scans and labels.json to")],
    count: Annotated[
        int, typer.Option(min=1, help="Scans (with --forms: form pages) to render")
    ] = 2000,
    fields: Annotated[
        bool, typer.Option("--fields", help="Digit-string fields of 3-8 digits, not single digits")
    ] = False,
    forms: Annotated[
        bool,
        typer.Option(
            "--forms", help="Filled-in forms as PDF and TIFF files, with form.yaml and truth.json"
        ),
    ] = False,
    generator: Annotated[
        str,
        typer.Option(
            help="samples: the project's own renderer; specimens: an independent one "
            "(docs/specimens.md) whose seeds under 1000 are held out, 1000 and up for development"
        ),
    ] = "samples",
    other_writers: Annotated[
        bool,
        typer.Option(
            "--other-writers",
            help="Digits by writers outside MNIST (the measured part of --writers), not MNIST's",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Picks the digits and every variation")] = 0,
    data: MnistData = None,
    writers: WritersData = None,
) -> None:
    """Render labelled sample scans of MNIST test digits (for evaluate, demos, benchmarks)."""
    from trainer import forms as form_generator
    from trainer import mnist, newwriters, specimens
    from trainer import samples as own

    if generator not in ("samples", "specimens"):
        raise UserError("--generator must be samples or specimens")
    if other_writers:
        if not writers:
            raise UserError("--other-writers needs --writers DIR or SCANDIGITS_WRITERS_DIR")
        found = newwriters.load(writers)
        images, labels = found.x_measure, found.y_measure
    else:
        digits = mnist.load(data)
        images, labels = digits.x_test, digits.y_test
    if forms:
        make = specimens.write_forms if generator == "specimens" else form_generator.write_forms
        truth = make(out, images, labels, count, seed=seed)
        say(f"wrote {len(truth)} form pages, form.yaml and truth.json to {out}/")
        return
    if generator == "specimens":
        if not fields:
            raise UserError("--generator specimens renders --fields or --forms")
        write = specimens.write_fields
    else:
        write = own.write_fields if fields else own.write_scans
    written = write(out, images, labels, count, seed=seed)
    say(f"wrote {len(written)} scans and labels.json to {out}/")


template_app = typer.Typer(no_args_is_help=True, help="Check form templates against pages.")
app.add_typer(template_app, name="template")


@template_app.command("check")
def template_check(
    template: Annotated[Path, typer.Argument(help="Form template (YAML)")],
) -> None:
    """Validate a form template and list its fields."""
    from worker.forms import templates

    form = templates.load(template)
    for spec in form.fields:
        rules = [
            f"{spec.digits} digits" if spec.digits else "",
            spec.pattern or "",
            spec.check or "",
        ]
        typer.echo(f"{spec.name}\t{list(spec.box)}\t{' '.join(r for r in rules if r)}")
    say(f"{template}: form {form.name!r}, {len(form.fields)} fields, valid")


@template_app.command("preview")
def template_preview(
    template: Annotated[Path, typer.Argument(help="Form template (YAML)")],
    page: Annotated[Path, typer.Argument(help="A scanned page: image, PDF or TIFF")],
    number: Annotated[int, typer.Option("--page", min=1, help="Page of a PDF or TIFF")] = 1,
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("preview.png"),
    model: ModelVersion = None,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Draw the template's fields, aligned to a page, with the text read in each."""
    from worker import batches
    from worker.forms import preview, templates
    from worker.reading import inference

    form = templates.load(template)
    classifier = inference.classifier(_open(store), model)
    data = batches.read_local(page)
    png, found = preview.render(form, data, number, classifier)
    try:
        out.write_bytes(png)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from exc
    for name, field in found.items():
        state = "valid" if field["valid"] else "INVALID"
        typer.echo(f"{name}\t{field['text']}\t{field['confidence']:.3f}\t{state}")
    say(f"wrote {out}")


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, help="Sample scans to render")] = 300,
    data: MnistData = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes to start")] = 2,
    chunk_size: ChunkSize = 128,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Run everything locally: Redis, a model, sample scans, two workers, one batch."""
    from worker import demo as run_demo

    raise typer.Exit(run_demo.run(_open(store), data, count, workers, chunk_size))


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
