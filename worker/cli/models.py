"""Model commands: train and publish a model, list the published ones and promote one,
evaluate one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trainer import say
from trainer.errors import UserError
from trainer.storage import open_store
from worker.cli.options import (
    DEFAULT_STORE,
    MnistData,
    ModelVersion,
    ReviewBelow,
    StoreUrl,
    WritersData,
    checked_store,
)
from worker.results import REVIEW_BELOW


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


models_app = typer.Typer(
    help="List published model versions; * marks current. `promote VERSION` makes one current."
)


@models_app.callback(invoke_without_command=True)
def list_models(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print metadata as JSON")] = False,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """List published model versions; * marks current."""
    if context.invoked_subcommand is not None:
        return
    from trainer import registry

    target = checked_store(store)
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


@models_app.command("promote")
def promote(
    version: Annotated[int, typer.Argument(min=1, help="A published version (see `models`)")],
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Make VERSION current, back or forward: batches submitted from now on are read with it,
    those submitted before keep theirs."""
    from trainer import registry

    meta = registry.promote(checked_store(store), version)
    typer.echo(
        f"model v{meta['version']} ({meta['architecture']}) is now current: "
        f"test accuracy {meta['test_accuracy']:.4f}"
    )


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

    report = evaluation.run(checked_store(store), model, data, scans or [], review_threshold)
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
