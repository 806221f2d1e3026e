"""The result record and the files a finished batch gets: JSON Lines, CSV and a summary.

JSON Lines carry every digit with its confidence and box (or, for a page of a form, every
field); the CSV keeps one flat row per image (per page: a column per field).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.forms.templates import Template
    from worker.manifest import Manifest
    from worker.reading.pipeline import Form, Reading

COLUMNS = (
    "source",
    "key",
    "page",
    "label",
    "confidence",
    "text",
    "error",
    "model",
    "needs_review",
    "review_reason",
)
# a form page's CSV columns after source, key, page and its fields (no field may take their names)
FORM_COLUMNS = ("needs_review", "review_fields", "review_reasons", "error", "model")
REVIEW_BELOW = 0.8  # default confidence under which a person should look at a result
FORMULA = frozenset("=+-@\t\r")  # a cell's first character that makes a spreadsheet run it


@dataclass(frozen=True)
class DigitResult:
    """A digit read: its label, confidence and box [x, y, w, h] in the scan's pixels."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "box": list(self.box)}


@dataclass(frozen=True)
class MarkLeftOut:
    """A mark of a digit's size not in the text: its box and why (off the line, not read)."""

    box: tuple[int, int, int, int]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "why": self.why}


@dataclass(frozen=True)
class Record:
    """One input's result (a page's, for a page of a multi-page input), as results.jsonl holds
    it, in the documented field order. Errors and marks left out always need review."""

    source: str
    key: str | None
    page: int | None  # from 1, set only for a page of a multi-page input
    label: int | None
    confidence: float
    text: str
    error: str | None
    model: int
    needs_review: bool
    review_reason: str | None
    digits: tuple[DigitResult, ...]
    left_out: tuple[MarkLeftOut, ...]

    @classmethod
    def of(
        cls,
        source: str,
        key: str | None,
        reading: Reading,
        model: int,
        review_below: float,
        page: int | None = None,
    ) -> Record:
        """The record of `reading`."""
        reason = review_reason(reading, review_below)
        return cls(
            source,
            key,
            page,
            reading.label,
            round(reading.confidence, 5),
            reading.text,
            reading.error,
            model,
            reason is not None,
            reason,
            tuple(
                DigitResult(d.label, round(d.confidence, 5), tuple(d.box)) for d in reading.digits
            ),
            _left_out(reading),
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["digits"] = [d.to_dict() for d in self.digits]
        data["left_out"] = [m.to_dict() for m in self.left_out]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        return cls(
            **{
                f.name: data[f.name]
                for f in dataclasses.fields(cls)
                if f.name not in ("digits", "left_out")
            },
            digits=tuple(
                DigitResult(d["label"], d["confidence"], tuple(d["box"])) for d in data["digits"]
            ),
            left_out=tuple(
                MarkLeftOut(tuple(m["box"]), m["why"]) for m in data.get("left_out", ())
            ),
        )


def review_reason(reading: Reading, review_below: float, problem: str | None = None) -> str | None:
    """Why a person should look at a reading, in a few words (its error, the marks it left
    out, the other string the string reader reads, the field rule it breaks, its low
    confidence), or None if nobody need."""
    if reading.error is not None:
        return reading.error
    if reading.left_out:
        counts = Counter(mark.why for mark in reading.left_out)
        return ", ".join(f"{n} mark{'s' * (n > 1)} {why}" for why, n in counts.items())
    if reading.disputed is not None:
        return f"read {reading.disputed} by the string reader alone"
    if problem is not None:
        return problem
    if reading.confidence < review_below:
        return f"confidence {reading.confidence:.2f} below {review_below:.2f}"
    return None


def _left_out(reading: Reading) -> tuple[MarkLeftOut, ...]:
    """The marks of a digit's size left out of a reading."""
    return tuple(MarkLeftOut(tuple(mark.box), mark.why) for mark in reading.left_out)


@dataclass(frozen=True)
class FieldResult:
    """One form field's result: its text and confidence, whether it holds its digit count,
    pattern and check digit (`valid`), and whether a person should look, and why."""

    text: str
    confidence: float
    needs_review: bool
    review_reason: str | None
    valid: bool
    error: str | None
    left_out: tuple[MarkLeftOut, ...]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "left_out": [m.to_dict() for m in self.left_out]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldResult:
        left_out = tuple(MarkLeftOut(tuple(m["box"]), m["why"]) for m in data.get("left_out", ()))
        return cls(**{**data, "left_out": left_out})


@dataclass(frozen=True)
class PageRecord:
    """One form page's result: a FieldResult per template field (none when the page could not
    be read: then `error` says why)."""

    source: str
    key: str | None
    page: int | None
    fields: dict[str, FieldResult]
    error: str | None
    model: int
    needs_review: bool

    @classmethod
    def of(
        cls,
        source: str,
        key: str | None,
        form: Form,
        template: Template,
        model: int,
        review_below: float,
        page: int | None = None,
    ) -> PageRecord:
        """The record of a form page read; a field that breaks a rule, or is unsure, needs
        review."""
        specs = {spec.name: spec for spec in template.fields}
        results = {}
        for name, reading in form.fields.items():
            problem = specs[name].problem(reading.text)
            reason = review_reason(reading, review_below, problem)
            results[name] = FieldResult(
                reading.text,
                round(reading.confidence, 5),
                reason is not None,
                reason,
                reading.error is None and problem is None,
                reading.error,
                _left_out(reading),
            )
        review = form.error is not None or any(f.needs_review for f in results.values())
        return cls(source, key, page, results, form.error, model, review)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "fields": {n: f.to_dict() for n, f in self.fields.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageRecord:
        results = {n: FieldResult.from_dict(f) for n, f in data["fields"].items()}
        return cls(**{**data, "fields": results})


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as JSON Lines."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs as a formula: text starting with = + - @ tab or CR, also
    after leading whitespace, gets a leading ' (OWASP's advice on CSV injection); source and
    key are file names from users. Numbers and other values are kept."""
    if isinstance(value, str) and (value[:1] in FORMULA or value.lstrip()[:1] in FORMULA):
        return "'" + value
    return value


def csv_bytes(records: Iterable[dict[str, Any]], fields: Sequence[str] = ()) -> bytes:
    """Records as CSV with a header row; nulls become empty cells, text cells pass `cell`.
    Given a form's `fields`, a page's row has a column of text per field and names the fields
    to review. Lines end in CRLF (RFC 4180), so that a cell holding a CR is quoted too."""
    columns = ("source", "key", "page", *fields, *FORM_COLUMNS) if fields else COLUMNS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for r in records:
        if fields:
            read = r["fields"]
            r = {
                **r,
                **{name: read[name]["text"] if name in read else None for name in fields},
                "review_fields": " ".join(n for n in fields if read.get(n, {}).get("needs_review")),
                "review_reasons": "; ".join(
                    f"{n}: {read[n]['review_reason']}"
                    for n in fields
                    if read.get(n, {}).get("review_reason")
                ),
            }
        writer.writerow({k: "" if r[k] is None else cell(r[k]) for k in columns})
    return out.getvalue().encode()


def summary(manifest: Manifest, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, label histogram, stage timings and throughput of a finished batch."""
    records = [r for chunk in chunks for r in chunk["records"]]
    fields = [f for r in records for f in r.get("fields", {}).values()]
    labels = Counter(int(c) for f in fields for c in f["text"])
    labels += Counter(d["label"] for r in records for d in r.get("digits", ()))
    counts = {  # of a form's fields
        "fields": len(fields),
        "fields_valid": sum(1 for f in fields if f["valid"]),
        "fields_needing_review": sum(1 for f in fields if f["needs_review"]),
    }
    stages: Counter[str] = sum((Counter(c["seconds"]) for c in chunks), Counter())
    finished = max(c["finished"] for c in chunks)
    elapsed = (
        datetime.fromisoformat(finished) - datetime.fromisoformat(manifest.created)
    ).total_seconds()
    return {
        "batch": manifest.batch,
        "model": manifest.model,
        "images": len(records),
        "read": sum(1 for r in records if r.get("text") or r.get("fields")),
        "digits": sum(labels.values()),
        "errors": sum(1 for r in records if r["error"]),
        "needs_review": sum(1 for r in records if r["needs_review"]),
        **(counts if fields else {}),
        "review_below": manifest.review_below,
        "label_histogram": {str(k): labels[k] for k in range(10)},
        "chunks": len(chunks),
        "submitted": manifest.created,
        "started": min(c["started"] for c in chunks),
        "finished": finished,
        "elapsed_seconds": round(elapsed, 3),
        "images_per_second": round(len(records) / elapsed, 2) if elapsed > 0 else None,
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
    }
