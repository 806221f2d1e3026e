"""Filled-in forms end to end: generated PDF and TIFF forms through `scandigits submit --template
… --wait` on real workers, scored against their truth.

    python -m benchmarks.forms --store URL [--generator own|specimens] [--count 200] [--seed 0]
        [--workers 2] [--out forms.json]

The store must hold a model. `--generator specimens` renders the forms with the independent
generator of docs/specimens.md (every box style on each page); its seeds below 1000 are held
out. Reports fields read exactly (overall and per field), whether every wrong check digit was
flagged, how many right fields were sent to review, how many fields were read with more digits
than written (print read as writing), and pages per second.
Prints a table and saves the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import benchmarks
from trainer import forms, mnist, specimen_forms
from trainer.storage import open_store
from worker import batches, local, queue
from worker.forms import templates

GENERATORS = {"own": forms.write_forms, "specimens": specimen_forms.write_forms}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    store = open_store(args.store)
    folder = args.workdir / f"{args.generator}-{args.count}-{args.seed}"
    if not (folder / "truth.json").is_file():
        digits = mnist.load(args.data)
        write = GENERATORS[args.generator]
        write(folder, digits.x_test, digits.y_test, args.count, seed=args.seed)
    truth = json.loads((folder / "truth.json").read_text())
    template = templates.load(folder / "form.yaml")
    with local.redis(args.workdir / "redis") as broker:
        queue.connect(broker)
        env = {"SCANDIGITS_BROKER_URL": broker, "SCANDIGITS_STORE": store.url}
        workers = local.start_workers(args.workers, env, args.workdir / "logs")
        try:
            local.wait_ready(workers, args.workdir / "logs")
            command = [sys.executable, "-m", "worker", "submit", "--wait", "--template"]
            submitted = subprocess.run(
                [*command, str(folder / "form.yaml"), str(folder / "scans")],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                text=True,
            )
        finally:
            local.stop_workers(workers)
    if submitted.returncode:  # submit said why on stderr
        raise SystemExit(submitted.returncode)
    batch_id = submitted.stdout.split()[-1]
    records = [
        json.loads(line) for line in batches.result_file(store, batch_id, "jsonl").splitlines()
    ]
    summary = json.loads(store.get(f"{batches.prefix(batch_id)}/summary.json"))
    report = score(records, truth, template)
    report.update(
        generator=args.generator,
        seed=args.seed,
        batch=batch_id,
        workers=args.workers,
        seconds=summary["elapsed_seconds"],
        pages_per_second=summary["images_per_second"],
    )
    print(table(report))
    benchmarks.save(report, args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    store = os.environ.get("SCANDIGITS_STORE")
    parser.add_argument("--store", default=store, required=not store, help="holds the model")
    parser.add_argument("--data", default=os.environ.get("SCANDIGITS_MNIST_DIR"))
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="own")
    parser.add_argument("--count", type=int, default=200, help="form pages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/results/forms"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/forms.json"))
    return parser


def score(
    records: list[dict[str, Any]], truth: dict[str, dict[str, str]], template: templates.Template
) -> dict[str, Any]:
    """Fields read exactly, wrong check digits flagged, right fields sent to review, and the
    fields let through without review that are wrong."""
    read = {f"{Path(r['source'].split('#')[0]).name}#{r['page'] or 1}": r for r in records}
    names = [spec.name for spec in template.fields]
    exact = dict.fromkeys(names, 0)
    wrong_checks = flagged = right = reviewed = longer = through = wrong_through = 0
    for page, values in truth.items():
        fields = read[page]["fields"]
        for spec in template.fields:
            field = fields.get(spec.name, {"text": None, "valid": False, "needs_review": True})
            exact[spec.name] += field["text"] == values[spec.name]
            longer += len(field["text"] or "") > len(values[spec.name])
            through += not field["needs_review"]
            wrong_through += not field["needs_review"] and field["text"] != values[spec.name]
            if spec.check and not spec.valid(values[spec.name]):
                wrong_checks += 1
                flagged += not field["valid"]
            else:
                right += 1
                reviewed += field["needs_review"]
    total = len(truth) * len(names)
    return {
        "pages": len(truth),
        "fields": total,
        "errors": sum(1 for r in records if r["error"]),
        "exact": round(sum(exact.values()) / total, 4),
        "exact_by_field": {n: round(exact[n] / len(truth), 4) for n in names},
        "wrong_check_digits": wrong_checks,
        "wrong_check_digits_flagged": flagged,
        "right_fields_sent_to_review": round(reviewed / max(1, right), 4),
        "fields_read_longer": longer,
        "fields_not_sent_to_review": through,
        "wrong_among_them": wrong_through,
    }


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    rows = [
        ("pages (forms)", report["pages"]),
        ("fields", report["fields"]),
        ("fields read exactly", f"{report['exact']:.2%}"),
        *((f"  {name}", f"{share:.2%}") for name, share in report["exact_by_field"].items()),
        (
            "wrong check digits flagged",
            f"{report['wrong_check_digits_flagged']}/{report['wrong_check_digits']}",
        ),
        ("other fields sent to review", f"{report['right_fields_sent_to_review']:.2%}"),
        ("fields read with more digits than written", report["fields_read_longer"]),
        (
            "fields not sent to review, wrong among them",
            f"{report['fields_not_sent_to_review']}, {report['wrong_among_them']}",
        ),
        ("page errors", report["errors"]),
        ("pages per second", f"{report['pages_per_second']} ({report['workers']} workers)"),
    ]
    return "\n".join(["| measure | value |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)])


if __name__ == "__main__":
    benchmarks.run(main)
