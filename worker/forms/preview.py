"""Template previews: a page with its form's fields drawn where alignment finds them and the
text read in each, green when the field holds its rules and red when not, so a user can check
a template against a real page in seconds."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from trainer.errors import AlignError, DecodeError, UserError
from worker import results
from worker.forms.align import align
from worker.forms.templates import Template
from worker.manifest import Item
from worker.reading import pipeline
from worker.reading.decode import decode
from worker.reading.inference import Classifier

GREEN, RED = (40, 150, 0), (0, 0, 220)


def render(
    template: Template, data: bytes, page: int, classifier: Classifier
) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """The preview of page `page` (from 1) of a scan as PNG bytes, and each field's result."""
    try:
        gray = decode(data, page - 1)
        alignment = align(gray, template)
    except (DecodeError, AlignError) as exc:
        raise UserError(str(exc)) from exc
    forms, _ = pipeline.read_forms(
        [Item("preview", "", page)], lambda _: data, classifier, template
    )
    if forms[0].error:
        raise UserError(forms[0].error)
    fields = results.PageRecord.of(
        "", None, forms[0], template, classifier.version, results.REVIEW_BELOW
    ).to_dict()["fields"]
    canvas = cv2.cvtColor((gray * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    thickness = max(2, round(max(gray.shape) / 600))
    for spec in template.fields:
        corners = alignment.corners(spec, gray.shape).round().astype(np.int32)
        field = fields[spec.name]
        colour = GREEN if field["valid"] else RED
        cv2.polylines(canvas, [corners], True, colour, thickness)
        label = f"{spec.name}: {field['text'] or field['error']}  {field['confidence']:.2f}"
        _label(canvas, label, corners, colour, thickness)
    return cv2.imencode(".png", canvas)[1].tobytes(), fields


def _label(
    canvas: np.ndarray, text: str, corners: np.ndarray, colour: tuple[int, int, int], weight: int
) -> None:
    """`text` on white beside the box (right of it, or under it if the page ends first)."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, weight / 3
    (width, height), _ = cv2.getTextSize(text, font, scale, weight)
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    x, y = x1 + 3 * weight, (y0 + y1 + height) // 2
    if x + width > canvas.shape[1]:
        x, y = x0, y1 + height + 3 * weight
    cv2.rectangle(
        canvas, (x - weight, y - height - weight), (x + width, y + 2 * weight), (255,) * 3, -1
    )
    cv2.putText(canvas, text, (int(x), int(y)), font, scale, colour, weight)
