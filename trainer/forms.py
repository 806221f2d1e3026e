"""Synthetic scanned forms: an expense claim filled in by hand with MNIST test digits, scanned a
little askew and saved as multi-page PDF and TIFF files, with the form's template and the truth
of every page, so the demo, tests and evaluation can measure reading whole forms."""

from __future__ import annotations

import datetime
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from trainer import checkdigits, handwriting, samples

DPI = 200
WIDTH, HEIGHT = 1654, 2339  # A4 portrait at DPI
# PDFium rounds a page's size in pixels up: a hair over DPI keeps 1654 from rendering as 1655
_PDF_RESOLUTION = DPI + 0.001
_MAX_PAGES = 3  # per file
_COLOUR_SHARE = 0.5  # of files; the rest are grayscale
_JPEG_QUALITY = (50, 90)  # both formats hold their pages as JPEG, as scanners write them
_WRONG_SHARE = 0.15  # account and reference fields written with a failing check digit
_DIGIT_HEIGHT = (0.6, 0.73)  # a writer's digit height as a share of the box height (each ±10%)
_PEN_MM = (0.3, 0.9)  # pen stroke width, millimetres: fine ballpoint to felt tip
_ROTATION, _OFFSET, _SCALE = 5.0, 0.05, 0.05  # scan misplacement: degrees, share of page, share
_YEARS = (1950, 2029)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BORDER, _DIVIDER = 3, 2  # printed line widths, pixels
_BOX_HEIGHT, _CELL = 96, 88  # every box's height and a comb cell's width, pixels


@dataclass(frozen=True)
class PrintedField:
    """A labelled box of the form: its outer edge in page pixels, and `cells` comb cells (one
    per digit, divided by thin lines) or 0 for a plain box."""

    label: str
    x: int
    y: int
    width: int
    height: int = _BOX_HEIGHT
    cells: int = 0
    rules: tuple[tuple[str, str], ...] = ()  # template lines: key, YAML value


FIELDS = {
    "account": PrintedField(
        "Account number", 150, 600, 800, rules=(("digits", "8"), ("check", "luhn"))
    ),
    "date": PrintedField(
        "Date (DDMMYYYY)",
        150,
        820,
        8 * _CELL,
        cells=8,
        rules=(
            ("digits", "8"),
            ("pattern", "'^(0[1-9]|[12][0-9]|3[01])(0[1-9]|1[0-2])(19|20)[0-9]{2}$'"),
        ),
    ),
    "amount": PrintedField("Amount", 150, 1040, 600, rules=(("pattern", "'^[0-9]{3,6}$'"),)),
    "reference": PrintedField(
        "Reference", 150, 1260, 7 * _CELL, cells=7, rules=(("digits", "7"), ("check", "mod11"))
    ),
}
_TEXT = (  # the form's other print: text, baseline x and y, font, scale, line width
    ("EXPENSE CLAIM", 150, 220, cv2.FONT_HERSHEY_TRIPLEX, 2.0, 4),
    ("Form EC-7", 1350, 220, _FONT, 1.0, 2),
    ("Please fill in this form by hand in black or blue ink.", 150, 330, _FONT, 0.95, 2),
    ("Write digits only; where a box is divided, one digit per box.", 150, 375, _FONT, 0.95, 2),
    ("Date: day, month and year, e.g. 25 March 2024 as 25032024.", 150, 420, _FONT, 0.95, 2),
    ("Amount: whole euros, no cents. Reference: see your receipt.", 150, 465, _FONT, 0.95, 2),
    ("EUR", 770, 1100, _FONT, 1.1, 2),
    ("I declare that the details given above are correct and complete.", 150, 1480, _FONT, 0.95, 2),
    ("Signature", 150, 1620, _FONT, 1.1, 2),
    ("Form EC-7 (rev. 03/2024)", 150, 2220, _FONT, 0.8, 2),
)
_RULES = ((150, 250, 1504, 253), (150, 1740, 900, 1742))  # printed lines: x0, y0, x1, y1


def write_forms(
    out_dir: Path, images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> dict[str, dict[str, str]]:
    """Write `count` filled-in form pages, handwritten with the 28x28 MNIST `images` picked by
    `seed`, to out_dir/scans/NNNN.pdf|tif (1-3 pages each; older ones removed), the template to
    out_dir/form.yaml and truth.json ("NNNN.pdf#page" -> field -> digits as written, page from
    1); returns that truth."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    by_label = [np.flatnonzero(labels == digit) for digit in range(10)]
    if not all(len(indices) for indices in by_label):
        raise ValueError("the images need every digit 0-9")
    if count < 0:
        raise ValueError(f"bad page count {count}")
    out_dir = Path(out_dir)
    scans = out_dir / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    (out_dir / "form.yaml").write_text(template())
    printed = _print()
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, str]] = {}
    names: list[str] = []
    while len(truth) < count:
        name = f"{len(names):04d}.{('pdf', 'tif')[len(names) % 2]}"  # half PDFs, half TIFFs
        size = min(count - len(truth), int(rng.integers(1, _MAX_PAGES + 1)))
        colour = rng.random() < _COLOUR_SHARE
        quality = int(rng.integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1))
        scanned = []
        for number, child in enumerate(rng.spawn(size), start=1):
            values = _values(child)
            digits = [images[child.choice(by_label[int(c)])] for c in "".join(values.values())]
            scanned.append(_page(printed, *_fill(values, digits, child), colour, child))
            truth[f"{name}#{number}"] = values
        _save(scans / name, scanned, quality)
        names.append(name)
    for stale in [*scans.glob("*.pdf"), *scans.glob("*.tif")]:
        if stale.name not in names:
            stale.unlink()
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def template() -> str:
    """The form's template as YAML: each field's box (outer edge as x, y, width, height in
    shares of the page's width and height) and the rules its digits follow."""
    lines = ["name: expense-claim", "fields:"]
    for name, field in FIELDS.items():
        box = (field.x / WIDTH, field.y / HEIGHT, field.width / WIDTH, field.height / HEIGHT)
        lines += [f"  {name}:", f"    box: [{', '.join(f'{v:.6f}' for v in box)}]"]
        lines += [f"    {key}: {value}" for key, value in field.rules]
    return "\n".join(lines) + "\n"


def _values(rng: np.random.Generator) -> dict[str, str]:
    """One claim's field values as written: a Luhn-checked account number, a date, an amount
    and a mod-11-checked reference, either check digit now and then wrong."""
    account = _digits(7, rng)
    account += checkdigits.luhn(account)
    reference = _digits(6, rng)
    while (check := checkdigits.mod11(reference)) is None:
        reference = _digits(6, rng)
    reference += check
    first, last = datetime.date(_YEARS[0], 1, 1), datetime.date(_YEARS[1], 12, 31)
    date = first + datetime.timedelta(days=int(rng.integers((last - first).days + 1)))
    amount = str(rng.integers(1, 10)) + _digits(int(rng.integers(2, 6)), rng)
    return {
        "account": _miswrite(account, rng) if rng.random() < _WRONG_SHARE else account,
        "date": f"{date:%d%m%Y}",
        "amount": amount,
        "reference": _miswrite(reference, rng) if rng.random() < _WRONG_SHARE else reference,
    }


def _digits(count: int, rng: np.random.Generator) -> str:
    """`count` random digits."""
    return "".join(str(d) for d in rng.integers(0, 10, size=count))


def _miswrite(value: str, rng: np.random.Generator) -> str:
    """`value` with one digit changed: Luhn and mod 11 (weights below 11) both catch that."""
    position = int(rng.integers(len(value)))
    digit = (int(value[position]) + int(rng.integers(1, 10))) % 10
    return value[:position] + str(digit) + value[position + 1 :]


def _print() -> np.ndarray:
    """The blank form's print as page-sized float32 coverage in [0, 1]: title, instructions,
    labels and boxes, the boxes' outer edges exactly where the template puts them."""
    page = np.zeros((HEIGHT, WIDTH), np.uint8)
    for text, x, y, font, scale, thick in _TEXT:
        cv2.putText(page, text, (x, y), font, scale, 255, thick, cv2.LINE_AA)
    for x0, y0, x1, y1 in _RULES:
        page[y0:y1, x0:x1] = 255
    for field in FIELDS.values():
        x, y, w, h = field.x, field.y, field.width, field.height
        cv2.putText(page, field.label, (x, y - 24), _FONT, 1.1, 255, 2, cv2.LINE_AA)
        page[y : y + h, x : x + w] = 255
        page[y + _BORDER : y + h - _BORDER, x + _BORDER : x + w - _BORDER] = 0
        for cell in range(1, field.cells):
            left = x + round(cell * w / field.cells) - _DIVIDER // 2
            page[y : y + h, left : left + _DIVIDER] = 255
    return page.astype(np.float32) / 255.0


def _fill(
    values: dict[str, str], digits: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """The handwriting of one writer with one pen, `digits` drawn as `values`' characters in
    field order, as page-sized float32 ink coverage; returns it and the stroke width."""
    size = rng.uniform(*_DIGIT_HEIGHT) * _BOX_HEIGHT
    pen = math.exp(rng.uniform(*np.log(_PEN_MM))) * DPI / 25.4
    patches, stroke = handwriting.handwrite(digits, size, rng, pen)
    ink = np.zeros((HEIGHT, WIDTH), np.float32)
    start = 0
    for name, value in values.items():
        field, mine = FIELDS[name], patches[start : start + len(value)]
        start += len(value)
        top, inside = field.y + _BORDER, field.height - 2 * _BORDER  # clear of the printed lines
        if field.cells:
            edges = [field.x + round(i * field.width / field.cells) for i in range(field.cells + 1)]
            for patch, (left, right) in zip(mine, itertools.pairwise(edges), strict=True):
                cell = (left + _BORDER, top, right - left - 2 * _BORDER, inside)
                _place(ink, _crop(patch), cell, 0.15 * size, rng)
        else:
            line, (x0, y0, x1, y1) = samples.layout(mine, size, rng)
            area = (field.x + _BORDER, top, field.width - 2 * _BORDER, inside)
            _place(ink, _crop(line[y0:y1, x0:x1]), area, 0.1 * size, rng)
    return ink, stroke


def _crop(coverage: np.ndarray) -> np.ndarray:
    """The coverage cut to its ink, soft edges included."""
    x, y, w, h = cv2.boundingRect((coverage > 0.02).astype(np.uint8))
    return coverage[y : y + h, x : x + w]


def _place(
    page: np.ndarray,
    ink: np.ndarray,
    area: tuple[int, int, int, int],
    jitter: float,
    rng: np.random.Generator,
) -> None:
    """Put ink into the page's x, y, width, height `area`, about centred (within `jitter`
    pixels), shrunk if it does not fit; ink may touch the area's edge but never leaves it."""
    x, y, width, height = area
    fit = min(1.0, width / ink.shape[1], height / ink.shape[0])
    if fit < 1.0:
        size = (max(1, math.floor(ink.shape[1] * fit)), max(1, math.floor(ink.shape[0] * fit)))
        ink = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
    h, w = ink.shape
    left = round(np.clip((width - w) / 2 + rng.uniform(-jitter, jitter), 0, width - w)) + x
    top = round(np.clip((height - h) / 2 + rng.uniform(-jitter, jitter), 0, height - h)) + y
    view = page[top : top + h, left : left + w]
    np.maximum(view, ink, out=view)


def _page(
    printed: np.ndarray, ink: np.ndarray, stroke: float, colour: bool, rng: np.random.Generator
) -> Image.Image:
    """The filled-in form (print and ink coverage, the ink's stroke width) through a scanner:
    placed a little rotated, shifted and scaled (off-page parts cut, uncovered parts bare
    paper), on tinted paper under uneven light, with blur and sensor noise."""
    centre = ((WIDTH - 1) / 2, (HEIGHT - 1) / 2)
    scale = 1.0 + rng.uniform(-_SCALE, _SCALE)
    matrix = cv2.getRotationMatrix2D(centre, rng.uniform(-_ROTATION, _ROTATION), scale)
    matrix[:, 2] += rng.uniform(-_OFFSET, _OFFSET, size=2) * (WIDTH, HEIGHT)
    printed, ink = (cv2.warpAffine(c, matrix, (WIDTH, HEIGHT)) for c in (printed, ink))
    image = samples.compose(ink, printed, colour, stroke, rng, samples.PEN_INKS)
    return Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if colour else image)


def _save(path: Path, pages: list[Image.Image], quality: int) -> None:
    """Write the pages to one PDF or multi-page TIFF (by `path`'s suffix) as JPEG of `quality`."""
    first, rest = pages[0], pages[1:]
    if path.suffix == ".pdf":
        # no creation or modification time: a seed always gives the same bytes
        first.save(
            path,
            "PDF",
            save_all=True,
            append_images=rest,
            resolution=_PDF_RESOLUTION,
            quality=quality,
            creationDate=None,
            modDate=None,
        )
    else:
        first.save(
            path,
            "TIFF",
            save_all=True,
            append_images=rest,
            compression="jpeg",
            quality=quality,
            dpi=(DPI, DPI),
        )
