"""The independent test-scan generator (docs/specimens.md): same seed same bytes, labels and meta
within the spec's bounds, held-out and development seeds on disjoint halves of the digit pool,
every print style drawn, and forms whose template loads and whose truth meets it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pypdfium2
import pytest
from PIL import Image

from tests.conftest import cli
from trainer import mnist, specimen_forms, specimens
from worker.forms import templates

POOL = 40  # synthetic digits: each half holds every label twice


def numbered_pool() -> tuple[np.ndarray, np.ndarray]:
    """Ring-shaped digits whose index is written in two faint corner pixels (below mnist.INK, so
    cropping ignores them); label = index mod 10."""
    images = np.zeros((POOL, 28, 28), np.uint8)
    for i, image in enumerate(images):
        cv2.ellipse(image, (14, 14), (5 + i % 3, 9), 0, 0, 360, 255, 3)
        image[0, 0], image[0, 1] = i % 20, i // 20
    return images, np.arange(POOL) % 10


def spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pool indices of the digits drawn from now on, read from their corner pixels."""
    drawn: list[int] = []
    real = specimens.pen_digit

    def recording(image: np.ndarray, *args: object) -> specimens.Stroke:
        drawn.append(int(image[0, 0]) + 20 * int(image[0, 1]))
        return real(image, *args)

    monkeypatch.setattr(specimens, "pen_digit", recording)
    return drawn


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_fields_same_seed_same_bytes(digits: mnist.Mnist, tmp_path: Path) -> None:
    for name in ("a", "b"):
        specimens.write_fields(tmp_path / name, digits.x_test, digits.y_test, 6, seed=1000)
    first, second = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
    assert first == second and len(first) == 8
    specimens.write_fields(tmp_path / "c", digits.x_test, digits.y_test, 6, seed=1001)
    assert folder_bytes(tmp_path / "c")["labels.json"] != first["labels.json"]


def test_fields_labels_and_meta(digits: mnist.Mnist, tmp_path: Path) -> None:
    labels = specimens.write_fields(
        tmp_path, digits.x_test, digits.y_test, 12, seed=1002, lengths=(2, 4)
    )
    assert json.loads((tmp_path / "labels.json").read_text()) == labels
    meta = json.loads((tmp_path / "meta.json").read_text())
    files = sorted(p.name for p in tmp_path.glob("field-*"))
    assert sorted(labels) == sorted(meta) == files
    assert files == [f"field-{i:05d}.{f[-3:]}" for i, f in enumerate(files)]
    for name, text in labels.items():
        info = meta[name]
        assert text.isdigit() and 2 <= len(text) <= 4
        assert set(info) == {"style", "spacing", "faint", "colour", "height"}
        assert info["style"] in specimens.STYLES
        assert info["spacing"] in [*specimens.GAPS, "cells"]
        assert info["faint"] is None or 0 <= info["faint"] < len(text)
        assert specimens.HEIGHT[0] <= info["height"] <= specimens.HEIGHT[1]
        image = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.ndim == (3 if info["colour"] else 2)
        assert image.shape[0] > info["height"]


def test_seeds_draw_from_disjoint_halves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = numbered_pool()
    drawn = spy(monkeypatch)
    for seed, half in (
        (0, range(20, 40)),
        (999, range(20, 40)),
        (1000, range(20)),
        (4321, range(20)),
    ):
        drawn.clear()
        written = specimens.write_fields(tmp_path / str(seed), images, labels, 5, seed=seed)
        assert drawn and set(drawn) <= set(half)
        assert "".join(written.values()) == "".join(str(i % 10) for i in drawn)
    assert specimens.pool(10, 999) == range(5, 10) and specimens.pool(10, 1000) == range(5)
    with pytest.raises(ValueError):
        specimens.pool(10, -1)


def test_every_style_and_variant_is_drawn() -> None:
    rng = np.random.default_rng(0)
    counts = Counter(specimens.choose_style(rng) for _ in range(2000))
    for style, share in specimens.STYLES.items():
        assert abs(counts[style] / 2000 - share) < 0.03, style
    plans = [specimens.print_plan(style, rng) for style in specimens.STYLES for _ in range(40)]
    variants = {(p.style, p.shape, p.shade < 1, p.cells, p.colour[2] > p.colour[0]) for p in plans}
    for variant in (
        ("dotted", "underline", False, False, False),
        ("dotted", "box", False, False, False),
        ("shaded", "comb", True, True, False),
        ("shaded", "none", True, True, False),
        ("shaded", "box", True, False, False),
        ("shaded", "none", True, False, False),
        ("drop-out", "box", False, False, True),
        ("drop-out", "comb", False, True, False),
        ("ticks down", "ticks down", False, True, False),
    ):
        assert variant in variants, variant
    assert {p.width for p in plans} == {1, 2, 3, 4}


@pytest.mark.parametrize("style", list(specimens.STYLES))
def test_render_field_in_each_style(digits: mnist.Mnist, style: str) -> None:
    rng = np.random.default_rng(len(style))
    image, meta = specimens.render_field(list(digits.x_test[:4]), rng, style=style, height=24)
    assert meta["style"] == style and meta["height"] == 24
    assert image.dtype == np.uint8 and image.ndim == (3 if meta["colour"] else 2)
    assert meta["colour"] or style != "drop-out"
    assert image.min() < 128 < image.max()  # ink on paper


def test_every_page_can_be_aligned() -> None:
    rng = np.random.default_rng(0)
    for colour in (True, False) * 100:
        styles = specimen_forms.page_styles(rng, colour)
        assert len(set(styles)) == 6 and sum(s in specimen_forms.SOLID for s in styles) >= 2
        assert colour or "drop-out" not in styles


def test_values_meet_their_rules_unless_miswritten() -> None:
    form = specimen_forms.design(np.random.default_rng(0))
    template = templates.parse(specimen_forms.template_yaml(form))
    rng = np.random.default_rng(1)
    for spec in template.fields:
        values = [specimen_forms.value(spec.name, rng, spec) for _ in range(400)]
        wrong = [v for v in values if not spec.valid(v)]
        if spec.check:
            assert 0.08 < len(wrong) / 400 < 0.22, spec.name
            assert all(spec.fits(v) for v in wrong)
        else:
            assert not wrong, spec.name
        low, high = specimen_forms.LENGTHS[spec.name]
        assert {len(v) for v in values} == set(range(low, high + 1))


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict, list[int]]]:
    """Four form pages of held-out seed 10 (a 3-page TIFF at 150 DPI and a 1-page PDF), written
    from the numbered pool, with the indices of the digits they drew."""
    images, labels = numbered_pool()
    folder = tmp_path_factory.mktemp("forms")
    with pytest.MonkeyPatch.context() as monkeypatch:
        drawn = spy(monkeypatch)
        truth = specimens.write_forms(folder, images, labels, 4, seed=10)
    yield folder, truth, drawn


def test_forms_template_and_truth(forms: tuple[Path, dict, list[int]]) -> None:
    folder, truth, drawn = forms
    assert json.loads((folder / "truth.json").read_text()) == truth
    template = templates.load(folder / "form.yaml")
    assert [spec.name for spec in template.fields] == list(specimen_forms.RULES)
    for spec in template.fields:
        x, y, width, height = spec.box
        assert specimen_forms.BOX[0] <= round(height, 3) <= specimen_forms.BOX[1]
        assert 0.05 < x < x + width < 0.95 and 0.1 < y < y + height < 0.95
    assert len(truth) == 4
    for values in truth.values():
        for spec in template.fields:
            text = values[spec.name]
            assert spec.valid(text) or (spec.check and spec.fits(text)), (spec.name, text)
    assert drawn and set(drawn) <= set(range(20, 40))
    assert "".join("".join(v.values()) for v in truth.values()) == "".join(
        str(i % 10) for i in drawn
    )


def test_forms_files_hold_the_truths_pages(forms: tuple[Path, dict, list[int]]) -> None:
    folder, truth, _ = forms
    files = sorted(p.name for p in (folder / "scans").iterdir())
    assert files == ["0000.tif", "0001.pdf"]
    for name in files:
        path = folder / "scans" / name
        if name.endswith(".pdf"):
            count = len(pypdfium2.PdfDocument(str(path)))
        else:
            with Image.open(path) as tiff:
                count = tiff.n_frames
                assert tiff.info["compression"] == "jpeg"
        assert [k for k in truth if k.startswith(name)] == [f"{name}#{i + 1}" for i in range(count)]


@pytest.mark.parametrize("seed", [11, 14])  # a one-page TIFF, a one-page PDF, both at 150 DPI
def test_forms_same_seed_same_bytes(tmp_path: Path, seed: int) -> None:
    images, labels = numbered_pool()
    for name in ("a", "b"):
        specimen_forms.write_forms(tmp_path / name, images, labels, 1, seed=seed)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")


def test_single_digits_from_the_samples_command_are_fields_of_one_digit(
    mnist_dir: Path, tmp_path: Path
) -> None:
    made = cli(
        "samples",
        str(tmp_path),
        "--generator",
        "specimens",
        "--count",
        "6",
        "--seed",
        "1000",
        "--data",
        str(mnist_dir),
    )
    assert made.returncode == 0, made.stderr
    labels = json.loads((tmp_path / "labels.json").read_text())
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert len(labels) == 6 and all(len(text) == 1 for text in labels.values())
    assert all(meta[name]["style"] in specimens.STYLES for name in labels)
