"""`scandigits demo`: the whole path on one machine, with an embedded Redis, the file store and
the bundled model: sample scans, then sample forms, each a batch read by real workers."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from trainer import forms, mnist, registry, samples, say
from trainer.errors import RegistryError
from trainer.storage import Store
from worker import batches, local, queue
from worker.forms import templates

WORKDIR = Path("scandigits-demo")
BUNDLED = Path(__file__).parent / "bundled"  # the default model: model.keras, metadata.json


def publish_bundled(store: Store) -> dict[str, Any]:
    """Publish the bundled model as `store`'s current version; its metadata."""
    model = BUNDLED / "model.keras"
    try:
        metadata = json.loads((BUNDLED / "metadata.json").read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"the bundled model's metadata is missing or broken ({exc})") from exc
    try:
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
    except OSError as exc:
        raise RegistryError(f"the bundled model {model} is missing ({exc})") from exc
    if digest != metadata.get("sha256"):
        raise RegistryError(
            f"the bundled model {model} is damaged (its sha256 is not the one metadata.json names)"
        )
    version, _ = registry.publish(store, model, metadata, "always")
    return registry.resolve(store, version)


def run(
    store: Store, data: str | None, count: int, pages: int, workers: int, chunk_size: int = 128
) -> int:
    """Publish the bundled model if the store has none; render `count` sample scans and
    `pages` form pages; read both on `workers` real workers; report accuracy and throughput."""
    if registry.current_version(store) is None:
        meta = publish_bundled(store)
        say(
            f"published the bundled model as v{meta['version']} ({meta['architecture']}, MNIST "
            f"test accuracy {meta['test_accuracy']:.4f})"
        )
    version = registry.resolve(store)["version"]
    digits = mnist.load(data)
    scans, sheets = WORKDIR / "scans", WORKDIR / "forms"
    say(f"rendering {count} sample scans into {scans}/ and {pages} form pages into {sheets}/")
    labels = samples.write_scans(scans, digits.x_test, digits.y_test, count)
    truth = forms.write_forms(sheets, digits.x_test, digits.y_test, pages)
    with local.redis(WORKDIR / "redis") as broker_url:
        queue.connect(broker_url)
        env = {"SCANDIGITS_BROKER_URL": broker_url, "SCANDIGITS_STORE": store.url}
        processes = local.start_workers(workers, env, WORKDIR)
        try:
            say(f"started {workers} workers on embedded Redis {broker_url}; waiting for them")
            local.wait_ready(processes, WORKDIR)
            scan_batch = _batch(store, scans, count, chunk_size, None, version)
            form = templates.load(sheets / "form.yaml")
            form_batch = _batch(store, sheets / "scans", pages, chunk_size, form, version)
        finally:
            local.stop_workers(processes)
    records = _records(store, scan_batch)
    correct = sum(r["text"] == labels[Path(r["source"]).name] for r in records)
    summary, form_summary = (_summary(store, batch) for batch in (scan_batch, form_batch))
    print(f"accuracy   {correct / len(records):.2%} ({correct}/{len(records)} scans read right)")
    print(
        f"throughput {summary['images_per_second']:.1f} images/s with {workers} workers "
        f"({summary['elapsed_seconds']:.2f} s for {len(records)} images)"
    )
    exact, fields, review = _fields(_records(store, form_batch), truth)
    print(
        f"forms      {exact / fields:.2%} of fields read exactly ({exact}/{fields} on {pages} "
        f"pages); {review} sent to review"
    )
    print(f"errors     {summary['errors'] + form_summary['errors']}")
    print(f"results    {store.url}/{batches.prefix(scan_batch)}/")
    print(f"           {store.url}/{batches.prefix(form_batch)}/")
    return 0


def _batch(
    store: Store,
    folder: Path,
    count: int,
    chunk_size: int,
    form: templates.Template | None,
    version: int,
) -> str:
    """Submit `folder` (read as the form `form`, if given) and wait for it with a progress bar;
    the batch id."""
    from tqdm import tqdm

    batch_id = batches.submit(store, [str(folder)], version, chunk_size, template=form)
    what = "form pages" if form else "scans"
    say(f"submitted batch {batch_id} ({count} {what}, model v{version})")
    with tqdm(total=count, desc=batch_id, unit="page" if form else "img", file=sys.stderr) as bar:
        batches.wait(store, batch_id, 600, lambda n: bar.update(n - bar.n))
    return batch_id


def _summary(store: Store, batch_id: str) -> dict[str, Any]:
    return json.loads(store.get(f"{batches.prefix(batch_id)}/summary.json"))


def _records(store: Store, batch_id: str) -> list[dict[str, Any]]:
    """A finished batch's results, one dict per input (or page)."""
    return [json.loads(line) for line in batches.result_file(store, batch_id, "jsonl").splitlines()]


def _fields(
    records: list[dict[str, Any]], truth: dict[str, dict[str, str]]
) -> tuple[int, int, int]:
    """Fields read exactly, fields in all, fields sent to review, of the form pages read."""
    exact = fields = review = 0
    for record in records:
        written = truth[f"{Path(record['source'].split('#')[0]).name}#{record['page'] or 1}"]
        for name, value in written.items():
            read = record["fields"].get(name, {"text": None, "needs_review": True})
            exact += read["text"] == value
            review += read["needs_review"]
            fields += 1
    return exact, fields, review
