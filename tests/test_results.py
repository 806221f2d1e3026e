"""Result records, typed and as JSON; of forms, a field per template field with its validity,
a CSV column per field, and the batch summary's field counts."""

from __future__ import annotations

import csv
import io
import json

from worker import results
from worker.forms.templates import FieldSpec, Template
from worker.manifest import Manifest
from worker.reading.pipeline import NOT_READ, Digit, Form, LeftOut, Reading

FORM = Template(
    "claim",
    (
        FieldSpec("account", (0.1, 0.1, 0.5, 0.05), digits=4, check="luhn"),
        FieldSpec("amount", (0.1, 0.3, 0.3, 0.05), pattern="^[0-9]{1,6}$"),
    ),
)


def reading(text: str, confidence: float = 0.99) -> Reading:
    return Reading([Digit(int(c), confidence, (0, 0, 1, 1)) for c in text])


def test_a_field_breaking_its_rules_is_invalid_and_needs_review() -> None:
    form = Form({"account": reading("4242"), "amount": reading("125")})
    record = results.PageRecord.of("f.pdf#2", "k", form, FORM, 3, 0.8, page=2).to_dict()
    assert list(record)[:4] == ["source", "key", "page", "fields"]
    account, amount = record["fields"]["account"], record["fields"]["amount"]
    assert (account["text"], account["valid"], account["needs_review"]) == ("4242", True, False)
    assert (amount["text"], amount["valid"], amount["needs_review"]) == ("125", True, False)
    assert not record["needs_review"] and record["error"] is None

    wrong = Form({"account": reading("4243"), "amount": reading("12", 0.5)})
    fields = results.PageRecord.of("f.pdf", "k", wrong, FORM, 3, 0.8).to_dict()["fields"]
    assert fields["account"]["valid"] is False and fields["account"]["needs_review"]
    assert fields["amount"]["valid"] is True and fields["amount"]["needs_review"]  # unsure


def test_a_reading_the_string_reader_disputes_needs_review() -> None:
    sure = reading("0939")
    sure.disputed = "099"  # the reader alone leaves a digit out: one of them is wrong
    record = results.Record.of("f.png", "k", sure, 3, 0.8).to_dict()
    assert record["needs_review"] and record["confidence"] <= 0.5
    assert record["review_reason"] == "read 099 by the string reader alone"


def test_page_and_field_errors_need_review() -> None:
    page = results.PageRecord.of("f.pdf", "k", Form(error="cannot align"), FORM, 3, 0.8).to_dict()
    assert page["fields"] == {} and page["error"] == "cannot align" and page["needs_review"]
    blank = Form({"account": Reading(error="no ink"), "amount": reading("7")})
    field = results.PageRecord.of("f.pdf", "k", blank, FORM, 3, 0.8).to_dict()["fields"]["account"]
    assert (field["text"], field["valid"], field["error"]) == ("", False, "no ink")


def test_form_csv_has_a_column_per_field_and_names_those_to_review() -> None:
    records = [
        results.PageRecord.of(
            "a.pdf#1",
            "k",
            Form({"account": reading("4242"), "amount": reading("9")}),
            FORM,
            3,
            0.8,
            1,
        ).to_dict(),
        results.PageRecord.of(
            "a.pdf#2",
            "k",
            Form({"account": reading("4243"), "amount": reading("9")}),
            FORM,
            3,
            0.8,
            2,
        ).to_dict(),
        results.PageRecord.of("b.png", "k2", Form(error="cannot align"), FORM, 3, 0.8).to_dict(),
    ]
    rows = list(
        csv.DictReader(io.StringIO(results.csv_bytes(records, ["account", "amount"]).decode()))
    )
    assert list(rows[0]) == [
        "source",
        "key",
        "page",
        "account",
        "amount",
        "needs_review",
        "review_fields",
        "review_reasons",
        "error",
        "model",
    ]
    assert [r["account"] for r in rows] == ["4242", "4243", ""]
    assert [r["review_fields"] for r in rows] == ["", "account", ""]
    assert [r["review_reasons"] for r in rows] == ["", "account: luhn check digit fails", ""]
    assert [r["needs_review"] for r in rows] == ["False", "True", "True"]


def test_summary_counts_fields() -> None:
    records = [
        results.PageRecord.of(
            "a", "k", Form({"account": reading("4243"), "amount": reading("9")}), FORM, 3, 0.8
        ).to_dict()
    ]
    chunk = {
        "records": records,
        "seconds": {},
        "started": "2026-01-01T00:00:01+00:00",
        "finished": "2026-01-01T00:00:02+00:00",
    }
    manifest = Manifest("b", "2026-01-01T00:00:00+00:00", 3, 1, 0.8, None, ())
    summary = results.summary(manifest, [chunk])
    assert (summary["fields"], summary["fields_valid"], summary["fields_needing_review"]) == (
        2,
        1,
        1,
    )
    assert summary["digits"] == 5 and summary["label_histogram"]["4"] == 2


HOSTILE = ['=HYPERLINK("http://x")', "+1", "-1", "@SUM(1)", "\tx", "\rx", " =1", "\n@x"]


def test_csv_cells_a_spreadsheet_would_run_are_escaped() -> None:
    """A text cell that starts with = + - @ tab or CR, also after leading whitespace, gets a
    leading ' so that no spreadsheet runs it (OWASP's CSV injection advice); ordinary names,
    numbers and the JSON Lines are kept as they are."""
    names = [*HOSTILE, "scan 1.png", "a-b.png", "x=1.png"]
    records = [results.Record.of(name, name, reading("7", 0.5), 3, 0.8).to_dict() for name in names]
    rows = list(csv.DictReader(io.StringIO(results.csv_bytes(records).decode(), newline="")))
    escaped = ["'" + name for name in HOSTILE]
    assert [r["source"] for r in rows] == [*escaped, "scan 1.png", "a-b.png", "x=1.png"]
    assert [r["key"] for r in rows] == [r["source"] for r in rows]
    assert {(r["label"], r["confidence"], r["model"]) for r in rows} == {("7", "0.5", "3")}
    assert [json.loads(line)["source"] for line in results.jsonl(records).splitlines()] == names

    form = Form({"account": reading("4242"), "amount": reading("9")})
    pages = [
        results.PageRecord.of(name, "k", form, FORM, 3, 0.8).to_dict() for name in ("=1+1", "f.pdf")
    ]
    text = results.csv_bytes(pages, ["account", "amount"]).decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["source"], r["account"]) for r in rows] == [("'=1+1", "4242"), ("f.pdf", "4242")]


def test_records_read_back_as_written() -> None:
    left = Reading([Digit(4, 0.9, (1, 2, 3, 4))], left_out=[LeftOut((9, 9, 5, 5), NOT_READ)])
    image = results.Record.of("a.pdf#2", "k", left, 3, 0.8, page=2)
    wire = json.loads(json.dumps(image.to_dict()))
    assert list(wire) == [*results.COLUMNS, "digits", "left_out"]
    assert wire["left_out"] == [{"box": [9, 9, 5, 5], "why": "not read"}]
    assert results.Record.from_dict(wire) == image
    page = results.PageRecord.of(
        "f.pdf", "k", Form({"account": left, "amount": reading("9")}), FORM, 3, 0.8
    )
    assert results.PageRecord.from_dict(json.loads(json.dumps(page.to_dict()))) == page
