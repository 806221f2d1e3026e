"""Form templates: where each field's printed box sits on the page and what its digits must
satisfy, read from YAML so that every mistake is reported with its line.

    name: expense-claim              # required: 1 to 100 printable characters
    fields:                          # required: 1 to 200 fields, kept in file order
      account:                       # a field name: [A-Za-z_][A-Za-z0-9_]{0,39}, unique
        box: [0.10, 0.30, 0.50, 0.05]  # required: x, y, width, height of the printed box's
                                     # outer edge, as fractions (0-1) of the upright page's
                                     # width and height; inside the page, width and height > 0
        digits: 8                    # optional: exactly this many digits (0-9), 1 to 40
        pattern: '^[0-9]{8}$'        # optional: a regex (RE2 syntax) the whole text must match
        check: luhn                  # optional: the last digit checks the others (luhn, mod11)

Templates come from users, so the YAML is read as nodes (which know their lines) rather than
as plain data: duplicate keys, which plain loading silently drops, are caught too. Aliases,
deep nesting and more nodes or bytes than any template needs are refused before any work.
Patterns are matched by RE2, in time linear in the text whatever the pattern, so that no
pattern can make a backtracking engine run for hours; RE2 has no backreferences or lookarounds.
A template travels in batch manifests and task messages as `Template.to_dict()`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import re2
import yaml

from trainer import checkdigits
from trainer.errors import UserError
from worker.results import FORM_COLUMNS

MAX_BYTES = 256_000  # 200 fields take about 20 kB
MAX_FIELDS = 200
MAX_NODES = 5_000  # a node per key, value and box number: 200 full fields take about 3,000
MAX_DEPTH = 8  # a template nests 5 deep
MAX_DIGITS = 40
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
# a page's own columns in the results CSV (worker/results.py): no field may take their names
RESERVED = frozenset(("source", "key", "page", *FORM_COLUMNS))
DIGITS = re.compile(r"[0-9]+")
PATTERN_OPTIONS = re2.Options()
PATTERN_OPTIONS.log_errors = False  # a bad pattern is a UserError, not a line on stderr
PATTERN_OPTIONS.never_capture = True  # only whether the text matches counts


@dataclass(frozen=True)
class FieldSpec:
    """One field: its printed box on the upright page (x, y, width, height as fractions of the
    page's width and height) and the rules its text must meet."""

    name: str
    box: tuple[float, float, float, float]
    digits: int | None = None
    pattern: str | None = None
    check: str | None = None

    def fits(self, text: str) -> bool:
        """Whether `text` has the field's form: its digit count and pattern. The reader prefers
        such readings; the check digit is never used to choose one, so a wrong one shows."""
        if not text:
            return False
        if self.digits is not None and (len(text) != self.digits or not DIGITS.fullmatch(text)):
            return False
        return self._matcher is None or self._matcher.fullmatch(text) is not None

    @cached_property
    def _matcher(self) -> re2._Regexp | None:
        """The pattern compiled by RE2, once per field."""
        return None if self.pattern is None else _compiled(self.pattern)

    def valid(self, text: str) -> bool:
        """Whether `text` meets every rule the field has: digit count, pattern, check digit;
        an empty text never does."""
        return self.problem(text) is None

    def problem(self, text: str) -> str | None:
        """The first rule `text` breaks, in a few words, or None."""
        if not text:
            return "nothing read"
        if not self.fits(text):
            if self.digits is not None and len(text) != self.digits:
                return f"{len(text)} digits, not {self.digits}"
            return "does not match its pattern"
        if self.check is not None and not checkdigits.valid(self.check, text):
            return f"{self.check} check digit fails"
        return None


@dataclass(frozen=True)
class Template:
    """A form: its name and its fields, in the order the template lists them."""

    name: str
    fields: tuple[FieldSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """The template as JSON-able data, for batch manifests and task messages."""
        fields = []
        for field in self.fields:
            rules = {"digits": field.digits, "pattern": field.pattern, "check": field.check}
            fields.append(
                {"name": field.name, "box": list(field.box)}
                | {key: value for key, value in rules.items() if value is not None}
            )
        return {"name": self.name, "fields": fields}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Template:
        """The template `to_dict` gave, checked again: it has travelled through a queue."""
        try:
            name = _name(data["name"])
            fields = tuple(
                _field(field["name"], {k: v for k, v in field.items() if k != "name"})
                for field in data["fields"]
            )
        except ValueError as exc:
            raise UserError(f"template data: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError(
                f"template data: not a template ({type(exc).__name__}: {exc})"
            ) from None
        names = [field.name for field in fields]
        if not 1 <= len(names) <= MAX_FIELDS:
            raise UserError(f"template data: {len(names)} fields (1 to {MAX_FIELDS} allowed)")
        if len(set(names)) < len(names):
            raise UserError("template data: a field name appears twice")
        return cls(name, fields)


def load(path: str | Path) -> Template:
    """The template in the YAML file at `path`."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read template {path}: {exc.strerror or exc}") from None
    return from_bytes(data, str(path))


def from_bytes(data: bytes, source: str) -> Template:
    """The template in YAML `data` (UTF-8), checked as `parse` checks it; `source` names it in
    the errors."""
    if len(data) > MAX_BYTES:
        raise UserError(f"{source}: over {MAX_BYTES:,} bytes, far more than any template")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{source} line {line}: not UTF-8 text") from None
    return parse(text, source)


def parse(text: str, source: str = "template") -> Template:
    """The template in YAML `text`; any problem is a UserError naming `source` and the line."""
    if len(text) > MAX_BYTES:
        raise UserError(f"{source}: over {MAX_BYTES:,} characters, far more than any template")
    try:
        root = yaml.compose(text, Loader=_Loader)
        if root is None:
            raise UserError(f"{source} line 1: empty; a template needs name and fields")
        return _template(root)
    except _Bad as exc:
        raise UserError(f"{source} line {exc.node.start_mark.line + 1}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = exc.context
        if context and exc.context_mark and exc.context_mark.line + 1 != line:
            context += f" started on line {exc.context_mark.line + 1}"
        problem = ", ".join(filter(None, [context, exc.problem]))
        raise UserError(f"{source} line {line}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise UserError(f"{source} line {line}: character U+{code:04X} is not allowed") from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe composer, refusing aliases and more nesting or nodes than a template has."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        self.nodes += 1
        if isinstance(event, yaml.AliasEvent):
            problem = "aliases (*name) are not allowed in a template"
        elif self.depth >= MAX_DEPTH:
            problem = f"nested over {MAX_DEPTH} levels deep"
        elif self.nodes > MAX_NODES:
            problem = f"over {MAX_NODES:,} keys and values"
        else:
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1
        raise yaml.composer.ComposerError(problem=problem, problem_mark=event.start_mark)


class _Bad(ValueError):
    """A problem with the template at one node, whose line the message will name."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


class _Invalid(ValueError):
    """A field breaks a rule at `key` (None: the field as a whole)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


def _template(root: yaml.Node) -> Template:
    """The template in a composed YAML document."""
    top = _mapping(root, "", "the template must be a mapping with name and fields")
    for key, (node, _) in top.items():
        if key not in ("name", "fields"):
            raise _Bad(node, _unknown(key, ["name", "fields"]))
    for key in ("name", "fields"):
        if key not in top:
            raise _Bad(root, f"{key} is missing")
    node = top["name"][1]
    try:
        name = _name(_value(node))
    except ValueError as exc:
        raise _Bad(node, str(exc)) from None
    node = top["fields"][1]
    if not isinstance(node, yaml.MappingNode) or not node.value:
        raise _Bad(node, "fields must map each field's name to its box and rules")
    if len(node.value) > MAX_FIELDS:
        raise _Bad(node.value[MAX_FIELDS][0], f"more than {MAX_FIELDS} fields")
    fields = []
    for field, (key_node, value_node) in _mapping(node, "field ", "").items():
        items = _mapping(value_node, f"field {field!r}: ", f"field {field!r} must be a mapping")
        try:
            fields.append(_field(field, {key: _value(value) for key, (_, value) in items.items()}))
        except _Invalid as exc:
            raise _Bad(items[exc.key][0] if exc.key else key_node, str(exc)) from None
    return Template(name, tuple(fields))


def _mapping(node: yaml.Node, where: str, expected: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's key and value nodes by key; a key given twice is an error."""
    if not isinstance(node, yaml.MappingNode):
        raise _Bad(node, expected)
    items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise _Bad(key, f"{where}keys must be plain names")
        if key.value in items:
            first = items[key.value][0].start_mark.line + 1
            raise _Bad(key, f"{where}{key.value!r} appears twice (first on line {first})")
        items[key.value] = (key, value)
    return items


def _value(node: yaml.Node) -> Any:
    """A node's value as plain data: str, int, float, bool, None, lists, dicts."""
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _unknown(key: str, known: list[str]) -> str:
    """The message for a key that is not one of `known`, with the likely intended one."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (expected {', '.join(known)})"
    return f"unknown key {key!r}{hint}"


def _field(name: str, values: dict[str, Any]) -> FieldSpec:
    """A field from its name and its keys' values, each checked."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _Invalid(
            None, f"field name {name!r} must be a letter or _ then up to 39 letters, digits or _"
        )
    if name in RESERVED:
        raise _Invalid(None, f"field name {name!r} is taken by a column of the results")
    for key in values:
        if key not in _RULES:
            raise _Invalid(key, f"field {name!r}: {_unknown(key, list(_RULES))}")
    if "box" not in values:
        raise _Invalid(None, f"field {name!r}: box is missing")
    checked = {}
    for key, value in values.items():
        try:
            checked[key] = _RULES[key](value)
        except ValueError as exc:
            raise _Invalid(key, f"field {name!r}: {exc}") from None
    field = FieldSpec(name, **checked)
    if field.check and field.digits is not None and field.digits < 2:
        raise _Invalid("digits", f"field {name!r}: check {field.check} needs 2 digits or more")
    return field


def _name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 100 or not value.isprintable():
        raise ValueError(f"name must be 1 to 100 printable characters, got {_shown(value)}")
    return value


def _box(value: Any) -> tuple[float, float, float, float]:
    numbers = isinstance(value, list | tuple) and len(value) == 4
    if not numbers or not all(_number(v) and 0 <= v <= 1 for v in value):
        raise ValueError(f"box must be 4 numbers between 0 and 1, got {_shown(value)}")
    x, y, width, height = map(float, value)
    if width <= 0 or height <= 0:
        raise ValueError(f"box width and height must be above 0, got {_shown(value)}")
    if x + width > 1 + 1e-9 or y + height > 1 + 1e-9:
        raise ValueError(
            f"box must end inside the page (x + width, y + height <= 1), got {value!r}"
        )
    return x, y, width, height


def _digits(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DIGITS:
        raise ValueError(
            f"digits must be a whole number from 1 to {MAX_DIGITS}, got {_shown(value)}"
        )
    return value


def _pattern(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"pattern must be a regular expression, got {_shown(value)}")
    _compiled(value)
    return value


def _compiled(pattern: str) -> re2._Regexp:
    """`pattern` compiled by RE2; one it cannot take is a ValueError on one line."""
    try:
        return re2.compile(pattern, PATTERN_OPTIONS)
    except re2.error as exc:
        said = exc.args[0] if exc.args else ""
        said = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in said)
        raise ValueError(
            f"pattern {_shown(pattern)} is not a valid regular expression (RE2 syntax: no "
            f"backreferences or lookarounds): {reason}"
        ) from None


def _check(value: Any) -> str:
    if not isinstance(value, str) or value not in checkdigits.SCHEMES:
        raise ValueError(f"check must be {' or '.join(checkdigits.SCHEMES)}, got {_shown(value)}")
    return value


_RULES: dict[str, Callable[[Any], Any]] = {
    "box": _box,
    "digits": _digits,
    "pattern": _pattern,
    "check": _check,
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
