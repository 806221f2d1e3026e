"""Contact sheets for people: the results to check, and a model's worst errors.

Each tile is a thumbnail with a caption (text read and confidence, or an error), laid out in
order, ten to a row, so a reviewer can go through a few hundred in a minute. A form's fields
are wide, so each field to check gets a strip of its own, cropped from the aligned page.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trainer.errors import AlignError, DecodeError, ObjectMissing
from trainer.storage import Store
from worker import batches
from worker.forms.align import align
from worker.forms.templates import Template
from worker.reading.decode import decode

TILE = 128
STRIP = (64, 640)  # height, width of a form field's crop in its strip
CAPTION = 22
COLUMNS = 10
BLUE, RED = (150, 40, 0), (0, 0, 200)


def to_review(store: Store, batch_id: str) -> tuple[list[dict[str, Any]], int]:
    """The finished batch's records marked needs_review, and how many records it has."""
    lines = batches.result_file(store, batch_id, "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if r.get("needs_review")], len(records)


def batch_sheet(
    store: Store, records: list[dict[str, Any]], template: Template | None = None
) -> np.ndarray:
    """A sheet of the batch's scans with what was read from each; for pages of a form, a strip
    per field to review."""

    def one(record: dict[str, Any]) -> list[np.ndarray]:
        if template and record["error"]:  # a page that was not read: nothing to crop from it
            return [_strip(None, Path(record["source"]).name, record["error"], RED)]
        try:
            gray = decode(store.get(record["key"]), (record.get("page") or 1) - 1)
        except (ObjectMissing, DecodeError, cv2.error):
            gray = None
        if template:
            return _field_strips(gray, record, template)
        if record["error"]:
            return [tile(gray, record["error"], RED)]
        return [tile(gray, f"{record['text']}  {record['confidence']:.2f}", BLUE)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        tiles = [t for some in pool.map(one, records) for t in some]
    return np.vstack(tiles) if template else grid(tiles)


def _field_strips(
    gray: np.ndarray | None, record: dict[str, Any], template: Template
) -> list[np.ndarray]:
    """A strip per field of the page to review: its crop, then name, text and confidence."""
    try:
        alignment = align(gray, template) if gray is not None else None
    except AlignError:
        alignment = None
    strips = []
    for spec in template.fields:
        field = record["fields"][spec.name]
        if not field["needs_review"]:
            continue
        crop = alignment.crop(gray, spec) if alignment else None
        caption = f"{field['text'] or field['error']}  {field['confidence']:.2f}"
        colour = BLUE if field["valid"] else RED
        strips.append(_strip(crop, f"{Path(record['source']).name} {spec.name}", caption, colour))
    return strips


def _strip(
    crop: np.ndarray | None, where: str, caption: str, colour: tuple[int, int, int]
) -> np.ndarray:
    """A field's crop fitted into STRIP, with where it is from and what was read beside it;
    without a crop (a page that could not be read), the caption in its place."""
    height, width = STRIP
    out = np.full((height, width + 320, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if crop is not None:
        scale = min(height / crop.shape[0], width / crop.shape[1])
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        thumb = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        out[: size[1], : size[0]] = (thumb[..., None] * 255).astype(np.uint8)
        cv2.putText(out, caption[:30], (width + 8, 50), font, 0.6, colour, 1)
    else:
        cv2.putText(out, caption[:110], (8, 40), font, 0.5, colour, 1)
    cv2.rectangle(out, (0, 0), (out.shape[1] - 1, height - 1), (200, 200, 200), 1)
    cv2.putText(out, where[:40], (width + 8, 24), font, 0.45, (90, 90, 90), 1)
    return out


def tile(gray: np.ndarray | None, caption: str, colour: tuple[int, int, int]) -> np.ndarray:
    """A gray image (ink dark on light, values in [0, 1]) fitted into TILE×TILE, captioned."""
    out = np.full((TILE + CAPTION, TILE, 3), 255, np.uint8)
    if gray is not None:
        scale = (TILE - 4) / max(gray.shape)
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        thumb = cv2.resize(gray, size, interpolation=interpolation)
        y, x = (TILE - size[1]) // 2, (TILE - size[0]) // 2
        out[y : y + size[1], x : x + size[0]] = (thumb[..., None] * 255).astype(np.uint8)
    cv2.rectangle(out, (0, 0), (TILE - 1, TILE + CAPTION - 1), (200, 200, 200), 1)
    cv2.putText(out, caption[:20], (4, TILE + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return out


def grid(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in reading order, COLUMNS to a row, on white."""
    rows = -(-len(tiles) // COLUMNS)
    sheet = np.full((rows * (TILE + CAPTION), COLUMNS * TILE, 3), 255, np.uint8)
    for n, one in enumerate(tiles):
        y, x = divmod(n, COLUMNS)
        sheet[y * (TILE + CAPTION) : (y + 1) * (TILE + CAPTION), x * TILE : (x + 1) * TILE] = one
    return sheet
