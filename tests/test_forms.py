"""Synthetic scanned forms: files and pages as asked, truth that keeps the template's rules but
for the deliberately wrong check digits, pages the worker decodes at A4 200 dpi, one seed one
set of files."""

from __future__ import annotations

import collections
import datetime
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from trainer import checkdigits, forms, mnist
from worker.reading import decode

COUNT = 40


@pytest.fixture(scope="module")
def written(
    digits: mnist.Mnist, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict[str, str]]]:
    """COUNT form pages written once for the module with seed 1."""
    folder = tmp_path_factory.mktemp("forms")
    return folder, forms.write_forms(folder, digits.x_test, digits.y_test, COUNT, seed=1)


def _pages_by_file(truth: dict[str, dict[str, str]]) -> dict[str, list[int]]:
    """File name -> the page numbers truth has for it."""
    pages = collections.defaultdict(list)
    for key in truth:
        name, page = key.split("#")
        pages[name].append(int(page))
    return pages


def test_files_pages_and_truth_match(written: tuple[Path, dict[str, dict[str, str]]]) -> None:
    folder, truth = written
    assert json.loads((folder / "truth.json").read_text()) == truth
    assert sorted(p.name for p in folder.iterdir()) == ["form.yaml", "scans", "truth.json"]
    pages = _pages_by_file(truth)
    assert sorted(p.name for p in (folder / "scans").iterdir()) == sorted(pages)
    assert len(truth) == COUNT
    for name, numbers in pages.items():
        assert re.fullmatch(r"\d{4}\.(pdf|tif)", name)
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) <= 3, name
        assert decode.pages((folder / "scans" / name).read_bytes()) == len(numbers), name
    suffixes = collections.Counter(Path(name).suffix for name in pages)
    assert abs(suffixes[".pdf"] - suffixes[".tif"]) <= 1
    assert max(len(numbers) for numbers in pages.values()) > 1


def test_truth_keeps_the_template_but_for_some_check_digits(
    written: tuple[Path, dict[str, dict[str, str]]],
) -> None:
    folder, truth = written
    fields = yaml.safe_load((folder / "form.yaml").read_text())["fields"]
    failed = collections.Counter()
    for key, values in truth.items():
        assert list(values) == list(fields), key
        for name, value in values.items():
            rules = fields[name]
            assert value.isdigit(), (key, name, value)
            assert len(value) == rules.get("digits", len(value)), (key, name, value)
            assert re.fullmatch(rules.get("pattern", ".*"), value), (key, name, value)
            if "check" in rules:
                failed[name] += not checkdigits.valid(rules["check"], value)
        day = datetime.datetime.strptime(values["date"], "%d%m%Y")  # a real calendar date
        assert 1950 <= day.year <= 2029 and values["amount"][0] != "0", (key, values)
    # about 15% of accounts and references carry a wrong check digit, the rest a right one
    assert 1 <= failed["account"] <= 0.35 * COUNT and 1 <= failed["reference"] <= 0.35 * COUNT
    assert len({values["account"] for values in truth.values()}) == COUNT


def test_template_boxes_lie_on_the_page_apart(
    written: tuple[Path, dict[str, dict[str, str]]],
) -> None:
    folder, _ = written
    template = yaml.safe_load((folder / "form.yaml").read_text())
    assert template["name"] == "expense-claim"
    assert list(template["fields"]) == ["account", "date", "amount", "reference"]
    boxes = [field["box"] for field in template["fields"].values()]
    for x, y, width, height in boxes:
        assert 0 <= x < x + width <= 1 and 0 <= y < y + height <= 1
        assert width * forms.WIDTH > 4 * height * forms.HEIGHT  # a row of digits fits
    for first, (x, y, width, height) in enumerate(boxes):
        for a, b, w, h in boxes[first + 1 :]:
            assert x + width <= a or a + w <= x or y + height <= b or b + h <= y


def test_pages_decode_as_a4_scans(written: tuple[Path, dict[str, dict[str, str]]]) -> None:
    folder, truth = written
    for name, numbers in list(_pages_by_file(truth).items())[:4]:  # two PDFs, two TIFFs
        data = (folder / "scans" / name).read_bytes()
        for page in range(len(numbers)):
            image, factor = decode.decode_reduced(data, page=page)
            assert image.shape == (forms.HEIGHT, forms.WIDTH) and factor == 1, (name, page)
            assert np.median(image) > 0.5 and image.min() < 0.3, (name, page)  # ink on paper
    colour = set()
    for path in (folder / "scans").iterdir():
        if path.suffix == ".pdf":
            colour.add(b"/DeviceRGB" in path.read_bytes())
        else:
            with Image.open(path) as image:
                colour.add(image.mode == "RGB")
    assert colour == {False, True}


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under folder, relative name -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_same_seed_same_files(digits: mnist.Mnist, tmp_path: Path) -> None:
    def write(folder: Path, seed: int, count: int = 4) -> dict[str, dict[str, str]]:
        return forms.write_forms(folder, digits.x_test, digits.y_test, count, seed=seed)

    truth = write(tmp_path / "first", seed=7)
    assert write(tmp_path / "again", seed=7) == truth
    assert _files(tmp_path / "again") == _files(tmp_path / "first")
    assert write(tmp_path / "other", seed=8) != truth
    assert list(write(tmp_path / "first", seed=7, count=1)) == ["0000.pdf#1"]
    assert sorted(_files(tmp_path / "first")) == ["form.yaml", "scans/0000.pdf", "truth.json"]


def test_rejects_bad_input(digits: mnist.Mnist, tmp_path: Path) -> None:
    images, labels = digits.x_test[:500], digits.y_test[:500]
    with pytest.raises(ValueError, match="labels"):
        forms.write_forms(tmp_path, images, labels[:10], 1)
    with pytest.raises(ValueError, match="every digit"):
        forms.write_forms(tmp_path, images[labels != 3], labels[labels != 3], 1)
    with pytest.raises(ValueError, match="count"):
        forms.write_forms(tmp_path, images, labels, -1)
