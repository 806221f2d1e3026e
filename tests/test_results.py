"""Result records of forms: a field per template field with its validity, a CSV column per
field, and the batch summary's field counts."""

from __future__ import annotations

import csv
import io
import json

from worker import results
from worker.forms.templates import FieldSpec, Template
from worker.manifest import Manifest
from worker.reading.pipeline import Digit, Form, Reading

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
    record = results.form_record("f.pdf#2", "k", form, FORM, 3, 0.8, page=2)
    assert list(record)[:4] == ["source", "key", "page", "fields"]
    account, amount = record["fields"]["account"], record["fields"]["amount"]
    assert (account["text"], account["valid"], account["needs_review"]) == ("4242", True, False)
    assert (amount["text"], amount["valid"], amount["needs_review"]) == ("125", True, False)
    assert not record["needs_review"] and record["error"] is None

    wrong = Form({"account": reading("4243"), "amount": reading("12", 0.5)})
    fields = results.form_record("f.pdf", "k", wrong, FORM, 3, 0.8)["fields"]
    assert fields["account"]["valid"] is False and fields["account"]["needs_review"]
    assert fields["amount"]["valid"] is True and fields["amount"]["needs_review"]  # unsure


def test_a_reading_the_string_reader_disputes_needs_review() -> None:
    sure = reading("0939")
    sure.disputed = "099"  # the reader alone leaves a digit out: one of them is wrong
    record = results.record("f.png", "k", sure, 3, 0.8)
    assert record["needs_review"] and record["confidence"] <= 0.5
    assert record["review_reason"] == "read 099 by the string reader alone"


def test_page_and_field_errors_need_review() -> None:
    page = results.form_record("f.pdf", "k", Form(error="cannot align"), FORM, 3, 0.8)
    assert page["fields"] == {} and page["error"] == "cannot align" and page["needs_review"]
    blank = Form({"account": Reading(error="no ink"), "amount": reading("7")})
    field = results.form_record("f.pdf", "k", blank, FORM, 3, 0.8)["fields"]["account"]
    assert (field["text"], field["valid"], field["error"]) == ("", False, "no ink")


def test_form_csv_has_a_column_per_field_and_names_those_to_review() -> None:
    records = [
        results.form_record(
            "a.pdf#1",
            "k",
            Form({"account": reading("4242"), "amount": reading("9")}),
            FORM,
            3,
            0.8,
            1,
        ),
        results.form_record(
            "a.pdf#2",
            "k",
            Form({"account": reading("4243"), "amount": reading("9")}),
            FORM,
            3,
            0.8,
            2,
        ),
        results.form_record("b.png", "k2", Form(error="cannot align"), FORM, 3, 0.8),
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
        results.form_record(
            "a", "k", Form({"account": reading("4243"), "amount": reading("9")}), FORM, 3, 0.8
        )
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
    records = [results.record(name, name, reading("7", 0.5), 3, 0.8) for name in names]
    rows = list(csv.DictReader(io.StringIO(results.csv_bytes(records).decode(), newline="")))
    escaped = ["'" + name for name in HOSTILE]
    assert [r["source"] for r in rows] == [*escaped, "scan 1.png", "a-b.png", "x=1.png"]
    assert [r["key"] for r in rows] == [r["source"] for r in rows]
    assert {(r["label"], r["confidence"], r["model"]) for r in rows} == {("7", "0.5", "3")}
    assert [json.loads(line)["source"] for line in results.jsonl(records).splitlines()] == names

    form = Form({"account": reading("4242"), "amount": reading("9")})
    pages = [results.form_record(name, "k", form, FORM, 3, 0.8) for name in ("=1+1", "f.pdf")]
    text = results.csv_bytes(pages, ["account", "amount"]).decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["source"], r["account"]) for r in rows] == [("'=1+1", "4242"), ("f.pdf", "4242")]
