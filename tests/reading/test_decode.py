"""Decoding of common and unusual formats, depths and alpha into one gray plane, and of each page
of a multi-page TIFF or PDF; junk, bombs, broken PDFs and oversized files or pages are one-line
DecodeErrors."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.bombs import (
    bigtiff_declaring,
    hdr_declaring,
    jpeg_declaring,
    png_declaring,
    sun_declaring,
)
from tests.conftest import ROOT
from trainer.errors import DecodeError
from worker import settings
from worker.reading.decode import decode, decode_colour, decode_reduced, dimensions, pages, writing
from worker.settings import Settings


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


GRAY = np.full((40, 60), 200, np.uint8)
GRAY[10:30, 20:25] = 20


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp", ".pgm"])
def test_formats(ext: str) -> None:
    out = decode(encode(GRAY, ext))
    assert out.shape == (40, 60) and out.dtype == np.float32
    assert out[20, 22] < 0.2 and out[5, 5] > 0.7


def test_colour_sixteen_bit_and_alpha() -> None:
    colour = cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR)
    assert decode(encode(colour, ".jpg"))[20, 22] < 0.2
    deep = GRAY.astype(np.uint16) * 257
    assert decode(encode(deep, ".png"))[5, 5] == pytest.approx(200 / 255, abs=0.01)
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[10:30, 20:25, 3] = 255
    out = decode(encode(rgba, ".png"))
    assert out[5, 5] == 1.0 and out[20, 22] == 0.0


def boxed(box: tuple[int, int, int], ink: tuple[int, int, int]) -> np.ndarray:
    """A colour field: four strokes in `ink` inside a box in `box` colour (BGR) on cream."""
    field = np.full((120, 480, 3), (225, 240, 245), np.uint8)
    cv2.rectangle(field, (10, 15), (470, 105), box, 2)
    for x in (80, 180, 280, 380):
        cv2.line(field, (x, 35), (x + 15, 85), ink, 5)
    return field


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize("box", [(170, 170, 250), (250, 200, 160)], ids=["red", "blue"])
def test_drop_out_boxes_vanish_from_the_plane_read(ext: str, box: tuple[int, int, int]) -> None:
    gray, colour, _ = decode_colour(encode(boxed(box, (40, 40, 40)), ext))
    plane = writing(gray, colour)
    paper = float(np.median(plane))
    assert gray[15, 240] < paper - 0.1, "the box shows in the gray"
    assert abs(plane[14:17, 20:460].mean() - paper) < 0.03, "but not in the plane read"
    assert plane[60, 189] < paper - 0.5, "where the writing stays dark"


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_a_drop_out_box_on_unevenly_lit_paper_vanishes_into_the_paper_beside_it(ext: str) -> None:
    """The light falls off across the page: where the box was, the plane read is the paper
    beside it, not the page's typical paper (a faint line of the box left, lighter or darker)."""
    lit = boxed((170, 170, 250), (40, 40, 40)) * np.linspace(1.0, 0.8, 480)[None, :, None]
    gray, colour, _ = decode_colour(encode(lit.astype(np.uint8), ext))
    plane = writing(gray, colour)
    for x in (30, 240, 450):
        beside = float(np.median(plane[20:30, x - 5 : x + 5]))
        assert abs(float(plane[14:17, x - 5 : x + 5].mean()) - beside) < 0.02


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_writing_in_the_drop_out_colour_stays_in_the_plane_read(ext: str) -> None:
    """A 0 written in a blue box's own blue, beside dark writing: in the channel where the box
    vanishes the 0 vanished too, silently; a mark of the print's colour apart from the print,
    and no line, is writing, read in the gray. The box still vanishes."""
    blue = (250, 200, 160)
    field = boxed(blue, (40, 40, 40))
    cv2.ellipse(field, (430, 60), (14, 26), 0, 0, 360, blue, 4)
    gray, colour, _ = decode_colour(encode(field, ext))
    plane = writing(gray, colour)
    paper = float(np.median(plane))
    assert plane[60, 414:418].min() < paper - 0.1, "the blue 0 stays"
    assert abs(plane[14:17, 20:400].mean() - paper) < 0.03, "the box does not"
    assert plane[60, 189] < paper - 0.5


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_writing_the_drop_out_channel_loses_stays_in_the_plane_read(ext: str) -> None:
    """An orange 0 in a red box: no red ink, so it vanished in the red channel too, silently;
    a mark the gray shows and the channel does not, apart from the print, is read in the gray."""
    field = boxed((170, 170, 250), (40, 40, 40))
    cv2.ellipse(field, (430, 60), (14, 26), 0, 0, 360, (60, 150, 250), 4)
    gray, colour, _ = decode_colour(encode(field, ext))
    plane = writing(gray, colour)
    paper = float(np.median(plane))
    assert plane[60, 414:418].min() < paper - 0.1, "the orange 0 stays"
    assert abs(plane[14:17, 20:400].mean() - paper) < 0.03, "the box does not"


def test_coloured_writing_without_coloured_print_is_read_from_the_gray() -> None:
    gray, colour, _ = decode_colour(encode(boxed((40, 40, 40), (150, 60, 20)), ".png"))
    assert writing(gray, colour) is gray  # blue ballpoint in a black box
    gray, colour, _ = decode_colour(encode(cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR), ".jpg"))
    assert writing(gray, colour) is gray


def test_a_lone_light_coloured_digit_is_read_from_the_gray() -> None:
    """A light blue 7, a field's only writing: its bar is as long a light coloured line as a
    drop-out box's rule would be, but in the plane where it would vanish no ink is left, so the
    gray is read, where the 7 is."""
    field = np.full((120, 110, 3), (225, 240, 245), np.uint8)
    cv2.polylines(field, [np.int32([[25, 25], [85, 25], [45, 100]])], False, (235, 170, 120), 6)
    gray, colour, _ = decode_colour(encode(field, ".png"))
    assert writing(gray, colour) is gray


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"<html></html>", "not a readable image"),
        (encode(GRAY, ".png")[:60], "not a readable image"),
        (bytes(range(256)) * 4, "not a readable"),
    ],
)
def test_junk(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(data)


def pil(image: np.ndarray, fmt: str, mode: str = "L", frames: int = 1) -> bytes:
    """Formats OpenCV cannot write: CMYK JPEG, palette PNG, animated GIF, multi-page TIFF."""
    from PIL import Image

    picture = Image.fromarray(image).convert(mode)
    out = io.BytesIO()
    extra = {"save_all": True, "append_images": [picture] * (frames - 1)} if frames > 1 else {}
    picture.save(out, fmt, **extra)
    return out.getvalue()


@pytest.mark.filterwarnings("error")  # Pillow's own bomb warning must not reach stderr
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (hdr_declaring(7000, 7000), "not a readable image (format not supported"),
        (b"PF\n7000 7000\n-1.0\n" + bytes(4096), "not a readable image (format not supported"),
        (
            b"P7\nWIDTH 7000\nHEIGHT 7000\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n"
            + bytes(4096),
            "not a readable image (format not supported",
        ),
        (sun_declaring(10_000, 10_000), "image too large (10000×10000 pixels; limit 40,000,000"),
        (bigtiff_declaring(20_000, 20_000), "image too large (20000×20000 pixels; limit 40,000,0"),
    ],
    ids=["hdr", "pfm", "pam", "sun", "bigtiff"],
)
def test_bombs_whose_size_is_not_read_are_refused_before_decoding(
    data: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("imdecode", "imdecodemulti"):
        monkeypatch.setattr(cv2, name, lambda *_, **__: pytest.fail("decoded"))
    for call in (decode, decode_reduced, decode_colour):
        with pytest.raises(DecodeError) as caught:
            call(data)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.e2e
@pytest.mark.parametrize("module", ["worker.cli", "worker", "trainer", "benchmarks"])
def test_opencv_refuses_images_over_the_pixel_limit_whatever_is_imported_first(
    module: str, tmp_path
) -> None:
    png = tmp_path / "bomb.png"
    png.write_bytes(png_declaring(7000, 7000))
    script = (
        f"import {module}, cv2, numpy\n"
        "try:\n"
        f"    cv2.imdecode(numpy.fromfile({str(png)!r}, numpy.uint8), cv2.IMREAD_UNCHANGED)\n"
        "except cv2.error as exc:\n"
        "    print('CV_IO_MAX_IMAGE_PIXELS' in str(exc))\n"
    )
    unset = ("OPENCV_IO_MAX_IMAGE_PIXELS", "SCANDIGITS_MAX_PIXELS")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"True\n", f"OpenCV decoded a 7000×7000 PNG after importing {module}"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cmyk.jpg", pil(GRAY, "JPEG", "CMYK")),
        ("palette.png", pil(GRAY, "PNG", "P")),
        ("animated.gif", pil(GRAY, "GIF", "P", frames=3)),
        ("pages.tif", pil(GRAY, "TIFF", frames=2)),
        ("one.png", encode(np.zeros((1, 1), np.uint8), ".png")),
    ],
)
def test_unusual_but_valid_images_decode(name: str, data: bytes) -> None:
    out = decode(data)
    assert out.ndim == 2 and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    if name != "one.png":
        assert out.shape == (40, 60) and out[5, 5] == pytest.approx(200 / 255, abs=0.02)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode(GRAY, ".jpg")[: len(encode(GRAY, ".jpg")) // 2], "not a readable image"),
        (b"%PDF-1.7\n1 0 obj << >> endobj\n", r"not a readable PDF \(damaged or not a PDF\)"),
        (b"PK\x03\x04" + bytes(100), "not a readable image"),
        (b"hello, this is text named .png", "not a readable image"),
        (png_declaring(50_000, 50_000), r"image too large \(50000×50000 pixels"),
        (jpeg_declaring(60_000, 40_000), r"image too large \(60000×40000 pixels"),
    ],
)
def test_hostile_files_are_one_line_errors(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        decode(data)
    assert "\n" not in str(caught.value)


def test_byte_and_pixel_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    big = encode(np.zeros((1200, 1000), np.uint8), ".png")
    assert dimensions(big) == (1000, 1200)
    limits = Settings(max_pixels=1_000_000)
    monkeypatch.setattr(settings, "current", lambda: limits)
    with pytest.raises(DecodeError, match=r"1000×1200 pixels; limit 1,000,000"):
        decode(big)
    limits = Settings(max_pixels=1_000_000, max_bytes=len(big) - 1)
    with pytest.raises(DecodeError, match="file too large"):
        decode(big)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp", ".gif", ".pgm"])
def test_dimensions_from_headers(ext: str) -> None:
    data = encode(GRAY, ext) if ext != ".gif" else pil(GRAY, "GIF", "P")
    assert dimensions(data) == (60, 40)


def test_large_jpegs_can_be_decoded_at_reduced_scale() -> None:
    page = np.full((1700, 900), 200, np.uint8)
    page[400:1300, 300:500] = 20
    gray, factor = decode_reduced(encode(page, ".jpg"))
    assert factor == 4 and gray.shape == (425, 225)  # 1/8 would leave a short side under 200
    assert gray[212, 100] < 0.2 and gray[25, 25] > 0.7
    assert decode(encode(page, ".jpg")).shape == (1700, 900), "decode keeps the full size"
    assert decode_reduced(encode(page, ".png"))[0].shape == (1700, 900)
    assert decode_reduced(encode(GRAY, ".jpg"))[1] == 1


def test_reduced_jpeg_keeps_exif_orientation() -> None:
    from PIL import Image

    picture = Image.fromarray(np.full((800, 400), 200, np.uint8))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotated 90° clockwise
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif)
    assert decode(out.getvalue()).shape == (400, 800)
    assert decode_reduced(out.getvalue())[0].shape == (200, 400)


BARS = [(12.5 + 15 * n) / 60 for n in range(3)]


def page_images() -> list[np.ndarray]:
    """Three pages told apart by where their bar of ink is (BARS, fractions of the width)."""
    images = [np.full((40, 60), 200, np.uint8) for _ in range(3)]
    for n, image in enumerate(images):
        image[10:30, 10 + 15 * n : 15 + 15 * n] = 20
    return images


def multipage(images: list[np.ndarray], fmt: str, **options: float) -> bytes:
    """A TIFF or PDF of one page per image, written by Pillow."""
    from PIL import Image

    first, *rest = (Image.fromarray(image) for image in images)
    out = io.BytesIO()
    first.save(out, fmt, save_all=True, append_images=rest, **options)
    return out.getvalue()


def handmade_pdf(*pages: bytes) -> bytes:
    """A PDF whose page tree holds the given objects, as written by hand."""
    kids = b" ".join(b"%d 0 R" % n for n in range(3, len(pages) + 3))
    tree = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages))
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate([b"<< /Type /Catalog /Pages 2 0 R >>", tree, *pages], 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    size = len(offsets) + 1
    table = b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, len(out))
    return out + b"xref\n0 %d\n0000000000 65535 f \n" % size + table + trailer


def bar(gray: np.ndarray) -> float:
    """Where a page's bar of ink is: its middle, as a fraction of the page's width."""
    return float(np.flatnonzero(gray[gray.shape[0] // 2] < 0.5).mean() + 0.5) / gray.shape[1]


@pytest.mark.parametrize(
    "data",
    [cv2.imencodemulti(".tiff", page_images())[1].tobytes(), multipage(page_images(), "TIFF")],
    ids=["opencv", "pillow"],
)
def test_each_page_of_a_tiff(data: bytes) -> None:
    assert pages(data) == 3
    assert [bar(decode(data, page)) for page in range(3)] == BARS
    assert [bar(decode_reduced(data, page)[0]) for page in range(3)] == BARS
    assert dimensions(data, 2) == (60, 40) and dimensions(data, 3) is None
    with pytest.raises(DecodeError, match=r"^no page 4 \(the file has 3\)$"):
        decode(data, 3)


def test_each_page_of_a_pdf_is_rendered_in_gray_at_the_set_dpi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = multipage(page_images()[:2], "PDF", resolution=72)  # pages of 60 × 40 points
    assert pages(data) == 2
    first, (second, factor) = decode(data), decode_reduced(data, 1)
    assert first.shape == second.shape == (112, 167) and factor == 1  # 200 dpi, rounded up
    assert first.dtype == np.float32 and np.median(first) == pytest.approx(200 / 255, abs=0.02)
    assert [bar(first), bar(second)] == pytest.approx(BARS[:2], abs=0.01)
    monkeypatch.setattr(settings, "current", lambda: Settings(pdf_dpi=144))
    assert decode(data, 1).shape == (80, 120)
    with pytest.raises(DecodeError, match=r"^no page 3 \(the file has 2\)$"):
        decode(data, 2)


def test_other_images_have_one_page() -> None:
    assert pages(encode(GRAY, ".png")) == pages(encode(GRAY, ".jpg")) == 1
    with pytest.raises(DecodeError, match="empty file"):
        pages(b"")
    with pytest.raises(DecodeError, match=r"^no page 2 \(the file has 1\)$"):
        decode_reduced(encode(GRAY, ".png"), 1)


def test_broken_pdfs_and_pages_are_one_line_errors() -> None:
    data = multipage(page_images(), "PDF")
    for broken in (data[: len(data) // 2], b"%PDF-1.7\n" + bytes(500)):
        for call in (pages, decode):
            with pytest.raises(DecodeError, match=r"^not a readable PDF \(damaged or not a PDF\)$"):
                call(broken)
    not_a_page = handmade_pdf(b"<< /Type /Page /MediaBox [0 0 72 72] >>", b"<< /Type /Font >>")
    assert pages(not_a_page) == 2 and decode(not_a_page).shape == (200, 200)
    with pytest.raises(DecodeError, match=r"^page 2 of the PDF is not readable$"):
        decode(not_a_page, 1)


def test_a_pdf_page_over_the_pixel_limit_is_refused_before_rendering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    document.new_page(14400, 14400)  # 200 × 200 inches
    out = io.BytesIO()
    document.save(out)
    monkeypatch.setattr(pdfium.PdfPage, "render", lambda *_, **__: pytest.fail("rendered"))
    with pytest.raises(DecodeError) as caught:
        decode(out.getvalue())
    assert str(caught.value) == (
        "page 1 too large (40000×40000 pixels at 200 dpi; limit 40,000,000 pixels)"
    )


def test_page_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "current", lambda: Settings(max_pages=2))
    for data in (multipage(page_images(), "TIFF"), multipage(page_images(), "PDF")):
        for call in (pages, decode):
            with pytest.raises(DecodeError, match=r"^too many pages \(limit 2\)$"):
                call(data)
    assert pages(multipage(page_images()[:2], "PDF")) == 2
