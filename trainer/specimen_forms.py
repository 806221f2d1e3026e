"""Render filled-in A4 forms as scanned PDF and TIFF files, with their template and truth.

The forms half of docs/specimens.md, built on the field parts of trainer/specimens.py (with its
print and scan parts, trainer/specimen_print.py and trainer/specimen_scan.py). One form
design (title, number, where each field's box sits) serves every page of a run, as one printed
form serves an office; each page is filled by its own writer, prints its fields in six different
styles (at least two solid boxes, so the page can be aligned) and is scanned on its own.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

from trainer import checkdigits
from trainer import specimen_print as printing
from trainer import specimen_scan as scanner
from trainer import specimens as sp

DATE = (
    r"^(?:(?:0[1-9]|1[0-9]|2[0-8])(?:0[1-9]|1[0-2])|(?:29|30)(?:0[13-9]|1[0-2])"
    r"|31(?:0[13578]|1[02])|2902)[0-9]{4}$"
)  # DDMMYYYY with a day the month has (29 February in any year)
RULES = {  # each field's rule in the template
    "account": {"digits": 8, "check": "luhn"},
    "amount": {"pattern": "^[0-9]{3,6}$"},
    "date": {"digits": 8, "pattern": DATE},
    "postcode": {"pattern": "^[0-9]{4,5}$"},
    "reference": {"digits": 7, "check": "mod11"},
    "phone": {"pattern": "^[0-9]{6,8}$"},
}
LENGTHS = {  # digits each field's value has
    "account": (8, 8),
    "amount": (3, 6),
    "date": (8, 8),
    "postcode": (4, 5),
    "reference": (7, 7),
    "phone": (6, 8),
}
YEARS = (1950, 2029)  # of a date
MISWRITTEN = 0.15  # account and reference values written with one digit changed
PAGE_MM = (210, 297)  # A4 portrait
DPIS = (150, 200, 300)  # a page's scan resolution
BORDER = (0.035, 0.045)  # the page border's inset, of the page's width and height
BOX = (0.045, 0.06)  # a box's height, of the page's height
CELL_WIDTH = (0.7, 1.0)  # a cell's width, of its box's height
LABEL = 0.55  # room a label takes above its box, in box heights
COLUMN = (0.09, 0.91)  # the part of the page's width the boxes take, inside the border
SPAN = (0.14, 0.92)  # the part of the page's height the fields take, below the title
SPACING = 0.012  # least space between a box and the next label, of the page's height
LABEL_CAPS = 0.3  # a label's capitals, in box heights
WRITTEN = (0.45, 0.75)  # base digit height H, of a box's inner height
SOLID = ("box", "comb", "ticks up", "ticks down")  # styles a page can be aligned on
FORM_STYLES = (*SOLID, "dotted", "dashed", "shaded", "drop-out", "underline")
FIELDS_PER_PAGE = 6
SCAN_TURN = 3.0  # degrees a page turns on the scanner, either way
SCAN_SHIFT = 0.03  # of the page, either way
SCAN_SCALE = 0.03  # either way
COLOUR = 0.5  # files scanned in colour; drop-out print only in those
PAGES = (1, 3)  # pages per file
TITLES = ("EXPENSE CLAIM", "PAYMENT ORDER", "CUSTOMER DETAILS", "REGISTRATION", "DELIVERY NOTE")


@dataclass(frozen=True)
class Design:
    """The printed form: its title and number, and each field's box as shares of the page."""

    title: str
    number: str
    font: int
    boxes: dict[str, tuple[float, float, float, float]]


@dataclass(frozen=True)
class Rule:
    """A field's rule as RULES states it, read as the product reads its template."""

    digits: int | None = None
    pattern: str | None = None
    check: str | None = None  # a key of checkdigits.SCHEMES

    def fits(self, text: str) -> bool:
        """Whether `text` has the field's digit count and matches its pattern; for a field
        without a check digit, whether it meets the rule."""
        if not text:
            return False
        if self.digits is not None and (
            len(text) != self.digits or not re.fullmatch("[0-9]+", text)
        ):
            return False
        return self.pattern is None or re.fullmatch(self.pattern, text) is not None


def design(rng: np.random.Generator) -> Design:
    """A form: fields stacked down the page at uneven spacings, each box high enough for a hand
    and wide enough for its longest value in cells, with its label above it."""
    aspect = PAGE_MM[1] / PAGE_MM[0]
    heights = rng.uniform(*BOX, len(RULES))
    blocks = heights * (1 + LABEL)  # a box and its label
    free = SPAN[1] - SPAN[0] - blocks.sum() - (len(RULES) + 1) * SPACING
    spaces = SPACING + rng.dirichlet(np.ones(len(RULES) + 1)) * free
    boxes = {}
    y = SPAN[0]
    for name, height, block, space in zip(RULES, heights, blocks, spaces[:-1], strict=True):
        width = LENGTHS[name][1] * height * aspect * rng.uniform(*CELL_WIDTH)
        x = rng.uniform(COLUMN[0], COLUMN[1] - width)
        y += space + block - height
        boxes[name] = tuple(round(float(v), 4) for v in (x, y, width, height))
        y += height
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)
    return Design(
        title=TITLES[rng.integers(len(TITLES))],
        number=f"FORM {rng.integers(10, 100)}-{'ABCDEFGH'[rng.integers(8)]}",
        font=int(fonts[rng.integers(len(fonts))]),
        boxes=boxes,
    )


def template_yaml(form: Design) -> str:
    """The design as the product's template: `name`, then each field's box and rule."""
    fields = {name: {"box": list(form.boxes[name]), **rule} for name, rule in RULES.items()}
    name = form.title.lower().replace(" ", "-")
    return yaml.safe_dump(
        {"name": name, "fields": fields}, sort_keys=False, default_flow_style=None, width=200
    )


def value(name: str, rng: np.random.Generator, spec: Rule) -> str:
    """A value for a field that meets its rule `spec` (a Rule, or the template's field), or for
    account and reference (15%) one written with one digit changed so its check digit fails."""
    while True:
        low, high = LENGTHS[name]
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(low, high + 1))))
        if name == "amount":
            text = str(rng.integers(1, 10)) + text[1:]
        elif name == "date":
            year = int(rng.integers(YEARS[0], YEARS[1] + 1))
            month = int(rng.integers(1, 13))
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
            text = f"{rng.integers(1, days + 1):02d}{month:02d}{year}"
        elif spec.check:
            check = checkdigits.SCHEMES[spec.check](text[:-1])
            if check is None:  # a mod-11 body whose check would be 10: not issued
                continue
            text = text[:-1] + check
            if rng.random() < MISWRITTEN:  # both checks catch every one-digit change
                at = int(rng.integers(len(text)))
                wrong = [d for d in "0123456789" if d != text[at]]
                text = text[:at] + wrong[rng.integers(9)] + text[at + 1 :]
        if spec.check or spec.fits(text):
            return text


def page_styles(rng: np.random.Generator, colour: bool) -> list[str]:
    """Six different print styles for a page's fields, at least two of them solid boxes; no
    drop-out print on a gray scan."""
    choices = [s for s in FORM_STYLES if colour or s != "drop-out"]
    while True:
        styles = [choices[i] for i in rng.permutation(len(choices))[:FIELDS_PER_PAGE]]
        if sum(s in SOLID for s in styles) >= 2:
            return styles


def render_page(
    form: Design,
    values: dict[str, str],
    pool: dict[str, np.ndarray],
    images: np.ndarray,
    dpi: int,
    colour: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """One filled-in page, scanned: uint8 BGR or gray at `dpi`. `pool` maps each digit
    character to the indices of `images` that may show it."""
    w, h = (round(mm / 25.4 * dpi) for mm in PAGE_MM)
    layer = np.ones((h, w, 3), np.float32)
    ink = (rng.uniform(*printing.PRINT_INKS[rng.integers(len(printing.PRINT_INKS))]),) * 3
    text = np.zeros((h, w), np.uint8)
    inset = rng.uniform(*BORDER)
    x0, y0 = round(inset * w), round(inset * h)
    thick = max(1, round(dpi / 100))
    cv2.rectangle(text, (x0, y0), (w - x0, h - y0), 255, thick)
    _text(text, form.title, form.font, (0.09 * w, 0.1 * h), 0.022 * h, thick + 1)
    _text(text, form.number, form.font, (0.72 * w, 0.1 * h), 0.011 * h, thick)
    hand = sp.writer(rng)
    for (name, box), style in zip(form.boxes.items(), page_styles(rng, colour), strict=True):
        x, y, bw, bh = box
        rect = (round(x * w), round(y * h), round((x + bw) * w), round((y + bh) * h))
        _text(
            text,
            name.upper(),
            form.font,
            (rect[0], rect[1] - 0.006 * h),
            bh * h * LABEL_CAPS,
            thick,
        )
        plan = printing.print_plan(
            style, rng, ink=None if style == "drop-out" else ink, shade_cells=True
        )
        cells = LENGTHS[name][1] if plan.cells else 0
        printing.draw_print(layer, plan, rect, cells)
        digits = [images[rng.choice(pool[c])] for c in values[name]]
        _fill(layer, rect, plan, cells, digits, hand, rng, right=name == "amount")
    layer *= 1 - (text[..., None] / np.float32(255)) * (1 - np.array(ink, np.float32))
    turn = cv2.getRotationMatrix2D(
        (w / 2, h / 2), rng.uniform(-SCAN_TURN, SCAN_TURN), 1 + rng.uniform(-SCAN_SCALE, SCAN_SCALE)
    )
    turn[:, 2] += rng.uniform(-SCAN_SHIFT, SCAN_SHIFT, 2) * (w, h)
    layer = cv2.warpAffine(layer, turn, (w, h), flags=cv2.INTER_LINEAR, borderValue=(1, 1, 1))
    return scanner.scan(layer, rng, colour)


def _text(
    mask: np.ndarray, words: str, font: int, at: tuple[float, float], cap: float, thick: int
) -> None:
    """Print capitals `cap` px high with their baseline's left end at `at`."""
    scale = cap / cv2.getTextSize(words, font, 1.0, thick)[0][1]
    cv2.putText(mask, words, (round(at[0]), round(at[1])), font, scale, 255, thick, cv2.LINE_AA)


def _fill(
    layer: np.ndarray,
    rect: printing.Rect,
    plan: printing.Plan,
    cells: int,
    digits: list[np.ndarray],
    hand: sp.Writer,
    rng: np.random.Generator,
    right: bool,
) -> None:
    """Write the digits into a field: one per cell (from the right for an amount), or freely
    on a line across the box (above an underline), closing up gaps the box has no room for,
    writing smaller where even that does not fit, and keeping the baseline's slope within the
    box as a writer would."""
    x0, y0, x1, y1 = rect
    inner = y1 - y0 - 2 * plan.width
    h = inner * rng.uniform(*WRITTEN)
    faint = int(rng.integers(len(digits))) if rng.random() < sp.FAINT_SHARE else None
    contrasts = [
        rng.uniform(*(sp.FAINT if i == faint else sp.CONTRAST)) for i in range(len(digits))
    ]
    if cells:
        strokes = [sp.pen_digit(d, rng, hand, h) for d in digits]
        edges = [x0 + k * (x1 - x0) / cells for k in range(cells + 1)]
        first = cells - len(digits) if right else 0
        boxes = [(edges[first + k], y0, edges[first + k + 1], y1) for k in range(len(digits))]
        sp.write_ink(layer, strokes, sp.in_cells(strokes, boxes, rng), contrasts, hand, rng)
        return
    spaces = sp.gaps(rng, hand.spacing, len(digits) - 1)
    margin = rng.uniform(*sp.MARGIN)
    for _ in range(3):
        strokes = [sp.pen_digit(d, rng, hand, h) for d in digits]
        room = x1 - x0 - 2 * plan.width - 2 * margin * h
        widths = sum(s.ink[2] - s.ink[0] for s in strokes)
        loose = sum(g for g in spaces if g > 0) * h
        fixed = widths + sum(g for g in spaces if g < 0) * h
        if fixed + loose <= room or fixed <= room:
            squeeze = min(1.0, (room - fixed) / loose) if loose else 1.0
            break
        h *= room / (fixed + loose) * 0.95
    px = [g * h * (squeeze if g > 0 else 1) for g in spaces]
    length = sum(s.ink[2] - s.ink[0] for s in strokes) + sum(px)
    spare = max(0.0, inner - max(s.ink[3] - s.ink[1] for s in strokes))
    tilt = min(sp.BASELINE, math.degrees(math.atan(spare / max(length, 1.0))))
    corners = sp.free_writing(strokes, px, rng, h, tilt)
    left, top, _, bottom = sp.ink_extent(strokes, corners)
    if plan.shape == "underline":  # on the line, and below the label where there is room
        dy = y1 - plan.width - rng.uniform(*sp.UNDERLINE) * h - bottom
        dy = min(max(dy, y0 - top), y1 - plan.width - bottom)
    else:
        dy = (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * inner - (top + bottom) / 2
    dx = x0 + plan.width + margin * h - left
    sp.write_ink(layer, strokes, [(x + dx, y + dy) for x, y in corners], contrasts, hand, rng)


def write_forms(
    out_dir: Path, digits: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> dict[str, dict[str, str]]:
    """Write `count` filled-in form pages as scans/NNNN.pdf|tif (1-3 pages a file), with the
    template form.yaml and truth.json ("NNNN.pdf#1" → field → digits, pages counted from 1),
    as benchmarks/forms.py scores them; returns the truth."""
    allowed = np.array(sp.pool(len(digits), seed))
    pool = {str(d): allowed[labels[allowed] == d] for d in range(10)}
    if any(not len(p) for p in pool.values()):
        raise ValueError("the digit pool's half for this seed lacks some digit 0-9")
    form = design(np.random.default_rng([seed, 0]))
    (out_dir / "scans").mkdir(parents=True, exist_ok=True)
    (out_dir / "form.yaml").write_text(template_yaml(form))
    rules = {name: Rule(**rule) for name, rule in RULES.items()}
    truth: dict[str, dict[str, str]] = {}
    number = done = 0
    while done < count:
        rng = np.random.default_rng([seed, 1, number])
        pages = min(int(rng.integers(PAGES[0], PAGES[1] + 1)), count - done)
        dpi = int(DPIS[rng.integers(len(DPIS))])
        colour = bool(rng.random() < COLOUR)
        quality = int(rng.integers(scanner.QUALITY[0], scanner.QUALITY[1] + 1))
        name = f"{number:04d}.{'pdf' if rng.random() < 0.5 else 'tif'}"
        scans = []
        for page in range(1, pages + 1):
            values = {field: value(field, rng, rules[field]) for field in RULES}
            image = render_page(form, values, pool, digits, dpi, colour, rng)
            scans.append(Image.fromarray(image if image.ndim == 2 else image[..., ::-1].copy()))
            truth[f"{name}#{page}"] = values
        (out_dir / "scans" / name).write_bytes(_save(scans, name[-3:], dpi, quality))
        done += pages
        number += 1
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _save(pages: list[Image.Image], kind: str, dpi: int, quality: int) -> bytes:
    """The pages as one PDF of JPEG images at their DPI, or one JPEG-compressed multi-page
    TIFF; no dates, so a seed always gives the same bytes."""
    out = io.BytesIO()
    first, rest = pages[0], pages[1:]
    if kind == "pdf":
        first.save(
            out,
            "PDF",
            save_all=True,
            append_images=rest,
            resolution=float(dpi),
            quality=quality,
            title="specimen",
            creationDate=None,
            modDate=None,
        )
    else:
        first.save(
            out,
            "TIFF",
            save_all=True,
            append_images=rest,
            compression="jpeg",
            quality=quality,
            dpi=(dpi, dpi),
        )
    return out.getvalue()
