"""Local tools, no queue needed: read images in-process, render sample scans, check form
templates against pages, and run the whole path on one machine (demo)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from trainer import say
from trainer.errors import UserError
from worker.cli.options import (
    DEFAULT_STORE,
    ChunkSize,
    MnistData,
    ModelVersion,
    ReviewBelow,
    StoreUrl,
    WritersData,
    checked_store,
)
from worker.results import REVIEW_BELOW


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

    classifier = inference.classifier(checked_store(store), model)
    readings, _ = pipeline.read(files, Path.read_bytes, classifier)
    for file, reading in zip(files, readings, strict=True):
        record = results.Record.of(str(file), None, reading, classifier.version, review_threshold)
        if as_json:
            typer.echo(json.dumps(record.to_dict()))
        elif reading.error:
            typer.echo(f"{file}\terror: {reading.error}")
        else:
            typer.echo(f"{file}\t{reading.text}\t{reading.confidence:.3f}")
    if any(r.error for r in readings):
        raise typer.Exit(1)


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
        # single digits are fields of one digit, in the same print styles
        write = partial(specimens.write_fields, lengths=(3, 8) if fields else (1, 1))
    else:
        write = own.write_fields if fields else own.write_scans
    written = write(out, images, labels, count, seed=seed)
    say(f"wrote {len(written)} scans and labels.json to {out}/")


def demo(
    count: Annotated[int, typer.Option(min=1, help="Sample scans to render")] = 300,
    forms: Annotated[int, typer.Option(min=1, help="Sample form pages to render")] = 20,
    data: MnistData = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes to start")] = 2,
    chunk_size: ChunkSize = 128,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Run everything locally: Redis, the bundled model, sample scans and forms, two workers."""
    from worker import demo as run_demo

    raise typer.Exit(run_demo.run(checked_store(store), data, count, forms, workers, chunk_size))


template_app = typer.Typer(no_args_is_help=True, help="Check form templates against pages.")


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
    from worker import inputs
    from worker.forms import preview, templates
    from worker.reading import inference

    form = templates.load(template)
    classifier = inference.classifier(checked_store(store), model)
    data = inputs.read_local(page)
    png, found = preview.render(form, data, number, classifier)
    try:
        out.write_bytes(png)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from exc
    for name, field in found.items():
        state = "valid" if field["valid"] else "INVALID"
        typer.echo(f"{name}\t{field['text']}\t{field['confidence']:.3f}\t{state}")
    say(f"wrote {out}")
