"""A contact sheet of the results a person should check: each scan, the text read, confidence.

Tiles are laid out in result order so a reviewer can go through a few hundred in a minute.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from trainer.storage import ObjectMissing, Store
from worker import batches
from worker.decode import DecodeError, decode

TILE = 128
CAPTION = 22
COLUMNS = 10


def to_review(store: Store, batch_id: str) -> tuple[list[dict[str, Any]], int]:
    """The finished batch's records marked needs_review, and how many records it has."""
    lines = batches.result_file(store, batch_id, "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if r.get("needs_review")], len(records)


def contact_sheet(store: Store, records: list[dict[str, Any]]) -> np.ndarray:
    """One BGR image: a captioned thumbnail per record, COLUMNS to a row."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        tiles = list(pool.map(lambda r: _tile(store, r), records))
    rows = -(-len(tiles) // COLUMNS)
    sheet = np.full((rows * (TILE + CAPTION), COLUMNS * TILE, 3), 255, np.uint8)
    for n, tile in enumerate(tiles):
        y, x = divmod(n, COLUMNS)
        sheet[y * (TILE + CAPTION) : (y + 1) * (TILE + CAPTION), x * TILE : (x + 1) * TILE] = tile
    return sheet


def _tile(store: Store, record: dict[str, Any]) -> np.ndarray:
    """The scan fitted into TILE×TILE with a caption: text read and confidence, or the error."""
    tile = np.full((TILE + CAPTION, TILE, 3), 255, np.uint8)
    try:
        gray = decode(store.get(record["key"]))
        scale = (TILE - 4) / max(gray.shape)
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        thumb = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        y, x = (TILE - size[1]) // 2, (TILE - size[0]) // 2
        tile[y : y + size[1], x : x + size[0]] = (thumb[..., None] * 255).astype(np.uint8)
    except (ObjectMissing, DecodeError, cv2.error):
        pass
    if record["error"]:
        caption, colour = record["error"][:20], (0, 0, 200)
    else:
        caption, colour = f"{record['text']}  {record['confidence']:.2f}", (150, 40, 0)
    cv2.rectangle(tile, (0, 0), (TILE - 1, TILE + CAPTION - 1), (200, 200, 200), 1)
    cv2.putText(tile, caption, (4, TILE + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return tile
