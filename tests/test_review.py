"""Contact sheets of a form batch: a strip per field to check, and one per page not read."""

from __future__ import annotations

from trainer.errors import ObjectMissing
from worker import review
from worker.forms.templates import FieldSpec, Template


class Gone:
    """A store whose inputs have all been deleted since the batch ran."""

    def get(self, key: str) -> bytes:
        raise ObjectMissing(key)


def test_form_sheet_has_a_strip_per_field_to_review_and_per_page_error() -> None:
    form = Template(
        "claim", (FieldSpec("a", (0.1, 0.1, 0.5, 0.1)), FieldSpec("b", (0.1, 0.3, 0.5, 0.1)))
    )
    sure = {"text": "1", "confidence": 0.99, "needs_review": False, "valid": True, "error": None}
    unsure = {**sure, "confidence": 0.5, "needs_review": True}
    records = [
        {"source": "p.pdf#1", "key": "k", "page": 1, "error": "cannot align", "fields": {}},
        {
            "source": "p.pdf#2",
            "key": "k",
            "page": 2,
            "error": None,
            "fields": {"a": unsure, "b": sure},
        },
    ]
    sheet = review.batch_sheet(Gone(), records, form)
    assert sheet.shape == (2 * review.STRIP[0], review.STRIP[1] + 320, 3)
