"""Form templates: a valid one round-trips through to_dict/from_dict; every kind of mistake and
hostile input is a one-line UserError naming its line; check digits and field validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trainer.errors import UserError
from worker.forms.templates import FieldSpec, Template, load, parse

FORM = """\
name: expense-claim
fields:
  account:
    box: [0.10, 0.30, 0.50, 0.05]
    digits: 8
    check: luhn
  amount:
    box:
      - 0.1
      - 0.5
      - 0.3
      - 0.04
    pattern: '[0-9]{1,6}'
  ref:
    box: [0.6, 0.5, 0.3, 0.04]
    check: mod11
"""


def error(text: str) -> str:
    with pytest.raises(UserError) as info:
        parse(text, "form.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def replaced(old: str, new: str) -> str:
    assert old in FORM
    return FORM.replace(old, new, 1)


def test_valid_template_keeps_field_order_and_round_trips() -> None:
    template = parse(FORM)
    assert template.name == "expense-claim"
    assert [field.name for field in template.fields] == ["account", "amount", "ref"]
    assert template.fields[0] == FieldSpec("account", (0.1, 0.3, 0.5, 0.05), 8, None, "luhn")
    assert template.fields[1].box == (0.1, 0.5, 0.3, 0.04)
    data = json.loads(json.dumps(template.to_dict()))
    assert data["fields"][1] == {
        "name": "amount",
        "box": [0.1, 0.5, 0.3, 0.04],
        "pattern": "[0-9]{1,6}",
    }
    assert Template.from_dict(data) == template


def test_load_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "form.yaml"
    path.write_text(FORM)
    assert load(path) == parse(FORM)
    path.write_text(FORM.replace("digits: 8", "digits: 0"))
    with pytest.raises(
        UserError, match=f"^{re.escape(str(path))} line 5: field 'account': digits must be"
    ):
        load(str(path))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (replaced("0.50, 0.05]", "0.50, 0.05"), 5, "flow sequence started on line 4"),
        (replaced("  ref:", "\tref:"), 14, "invalid YAML"),
        (
            replaced("    digits: 8", "    digit: 8"),
            5,
            "unknown key 'digit'; did you mean 'digits'?",
        ),
        (replaced("name:", "nmae:"), 1, "unknown key 'nmae'; did you mean 'name'?"),
        (replaced("  ref:", "  account:"), 14, "field 'account' appears twice (first on line 3)"),
        (replaced("    check: luhn", "    box: [0.1, 0.1, 0.1, 0.1]"), 6, "'box' appears twice"),
        (replaced("[0.10, 0.30, 0.50, 0.05]", "[0.1, 0.2]"), 4, "got [0.1, 0.2]"),
        (replaced("[0.10, 0.30, 0.50, 0.05]", "[0.1, 0.3, 0.5, 1.5]"), 4, "between 0 and 1"),
        (replaced("[0.10, 0.30, 0.50, 0.05]", "[0.1, 0.3, 0.5, yes]"), 4, "between 0 and 1"),
        (replaced("      - 0.3", "      - 0"), 8, "field 'amount': box width and height must be"),
        (replaced("[0.6, 0.5, 0.3, 0.04]", "[0.8, 0.5, 0.3, 0.04]"), 15, "end inside the page"),
        (replaced("'[0-9]{1,6}'", "'[0-9'"), 13, "not a valid regular expression"),
        (replaced("'[0-9]{1,6}'", '"[0-9\\n"'), 13, "not a valid regular expression"),
        (replaced("'[0-9]{1,6}'", "'([0-9])\\1'"), 13, "no backreferences or lookarounds"),
        (replaced("'[0-9]{1,6}'", "'(?=1)[0-9]+'"), 13, "no backreferences or lookarounds"),
        (replaced("'[0-9]{1,6}'", "123"), 13, "pattern must be a regular expression, got 123"),
        (replaced("check: mod11", "check: mod10"), 16, "check must be luhn or mod11, got 'mod10'"),
        (replaced("digits: 8", "digits: 41"), 5, "digits must be a whole number from 1 to 40"),
        (replaced("digits: 8", "digits: 8.5"), 5, "digits must be a whole number"),
        (replaced("digits: 8", "digits: 1"), 5, "check luhn needs 2 digits or more"),
        (replaced("  amount:", "  2nd_amount:"), 7, "field name '2nd_amount' must be"),
        (replaced("    box: [0.6, 0.5, 0.3, 0.04]\n", ""), 14, "field 'ref': box is missing"),
        (FORM[: FORM.index("  ref:")] + "  ref: 7\n", 14, "field 'ref' must be a mapping"),
        (replaced("name: expense-claim", "name: [a, b]"), 1, "name must be"),
        (replaced("name: expense-claim\n", ""), 1, "name is missing"),
        ("name: x\nfields:\n", 2, "fields must map each field's name"),
        ("- name: x\n", 1, "must be a mapping with name and fields"),
        ("", 1, "empty"),
        ("name: x\n---\nname: y\n", 2, "single document"),
    ],
)
def test_each_mistake_names_its_line(text: str, line: int, message: str) -> None:
    got = error(text)
    assert got.startswith(f"form.yaml line {line}: "), got
    assert message in got, got


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: &a x\nfields:\n  b: {box: *a}\n", 3, "aliases"),  # the billion-laughs route
        ("name: " + "[" * 100_000, 1, "nested over 8 levels deep"),
        ("name: x\nfields:\n  a: {box: [" + "0, " * 50_000 + "]}", 3, "over 5,000"),
        (
            "name: x\nfields:\n" + "".join(f"  f{i}: {{box: [0, 0, 1, 1]}}\n" for i in range(201)),
            203,
            "more than 200 fields",
        ),
        ("name: !!python/object/apply:os.system [ls]\nfields: {}\n", 1, "determine a constructor"),
        ("name: x\n\x00\x01\x02", 2, "character U+0000 is not allowed"),
    ],
)
def test_hostile_input_is_refused_with_its_line(text: str, line: int, message: str) -> None:
    got = error(text)
    assert got.startswith(f"form.yaml line {line}: "), got
    assert message in got, got


def test_oversized_binary_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="over 256,000 characters"):
        parse("#" * 300_000)
    path = tmp_path / "form.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\x00junk")
    with pytest.raises(UserError, match=r"line 2: not UTF-8 text$"):
        load(path)
    path.write_bytes(b"#" * 300_000)
    with pytest.raises(UserError, match="over 256,000 bytes"):
        load(path)
    with pytest.raises(UserError, match=r"^cannot read template .*missing\.yaml: No such file"):
        load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"name": "x"},
        {"name": "x", "fields": []},
        {"name": "x", "fields": [{"name": "a", "box": [0, 0, 2, 1]}]},
        {"name": "x", "fields": [{"name": "a", "box": [0, 0, 1, 1], "digit": 3}]},
        {"name": "x", "fields": [{"name": "a", "box": [0, 0, 1, 1]}] * 2},
    ],
)
def test_from_dict_checks_what_travelled(data: dict) -> None:
    with pytest.raises(UserError, match=r"^template data: "):
        Template.from_dict(data)


def test_valid_checks_count_pattern_and_check_digit() -> None:
    account, amount, ref = parse(FORM).fields
    assert account.valid("12345674")  # 8 digits, Luhn holds
    assert not account.valid("12345675")  # 8 digits, Luhn fails
    assert not account.valid("2345674") and not account.valid("012345674")  # 7 and 9 digits
    assert not account.valid("1234 674")  # 8 characters, one not a digit
    assert amount.valid("125") and amount.valid("999999")
    assert not amount.valid("1234567") and not amount.valid("12a")
    assert ref.valid("123456789") and not ref.valid("123456788")
    assert not FieldSpec("free", (0, 0, 1, 1)).valid("")
    assert FieldSpec("free", (0, 0, 1, 1)).valid("anything")


@pytest.mark.timeout(10)
def test_a_pattern_is_matched_in_time_linear_in_the_text() -> None:
    """Template files come from users: a pattern that makes a backtracking engine take time
    exponential in the text (here 2^n) is matched by RE2 in one pass, on any text."""
    field = parse(replaced("'[0-9]{1,6}'", "'(0|0)+1'")).fields[1]
    assert not field.fits("0" * 100_000) and field.fits("0" * 100_000 + "1")
    assert not field.valid("0" * 40 + "2") and field.valid("001")
