"""The result record and the files a finished batch gets: JSON Lines, CSV and a summary.

JSON Lines carry every digit with its confidence and box; the CSV keeps one flat row per image.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.pipeline import Reading

COLUMNS = ("source", "key", "page", "label", "confidence", "text", "error", "model", "needs_review")
REVIEW_BELOW = 0.8  # default confidence under which a person should look at a result


def record(
    source: str,
    key: str | None,
    reading: Reading,
    model: int,
    review_below: float,
    page: int | None = None,
) -> dict[str, Any]:
    """One input's result, in the documented field order; errors always need review. `page`
    (from 1) is set only for a page of a multi-page input."""
    return {
        "source": source,
        "key": key,
        "page": page,
        "label": reading.label,
        "confidence": round(reading.confidence, 5),
        "text": reading.text,
        "error": reading.error,
        "model": model,
        "needs_review": reading.error is not None or reading.confidence < review_below,
        "digits": [
            {"label": d.label, "confidence": round(d.confidence, 5), "box": list(d.box)}
            for d in reading.digits
        ],
    }


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as JSON Lines."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def csv_bytes(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as CSV with a header row; nulls become empty cells."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
    return out.getvalue().encode()


def summary(manifest: dict[str, Any], chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, label histogram, stage timings and throughput of a finished batch."""
    records = [r for chunk in chunks for r in chunk["records"]]
    labels = Counter(d["label"] for r in records for d in r["digits"])
    stages: Counter[str] = sum((Counter(c["seconds"]) for c in chunks), Counter())
    finished = max(c["finished"] for c in chunks)
    elapsed = (
        datetime.fromisoformat(finished) - datetime.fromisoformat(manifest["created"])
    ).total_seconds()
    return {
        "batch": manifest["batch"],
        "model": manifest["model"],
        "images": len(records),
        "read": sum(1 for r in records if r["text"]),
        "digits": sum(labels.values()),
        "errors": sum(1 for r in records if r["error"]),
        "needs_review": sum(1 for r in records if r["needs_review"]),
        "review_below": manifest["review_below"],
        "label_histogram": {str(k): labels[k] for k in range(10)},
        "chunks": len(chunks),
        "submitted": manifest["created"],
        "started": min(c["started"] for c in chunks),
        "finished": finished,
        "elapsed_seconds": round(elapsed, 3),
        "images_per_second": round(len(records) / elapsed, 2) if elapsed > 0 else None,
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
    }
