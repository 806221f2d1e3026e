"""Decode image bytes (PNG, JPEG, BMP, TIFF, PDF, ...) into one grayscale float32 plane in [0, 1]
and, for a colour scan whose print is in a light drop-out colour (red or blue boxes), the
colour channel where that print vanishes while the writing stays dark.

Files come from outside: the size is checked against byte and pixel limits before anything is
decoded, Pillow reading the dimensions from the file's header, so a small file declaring a huge
image (a decompression bomb) costs nothing. A file whose header Pillow cannot read, or reads as a
format OpenCV does not decode by that header, is refused without being decoded. OpenCV's own
header check is set to the same limit (`trainer`).

A multi-page TIFF or a PDF holds several pages, decoded one at a time (`page`, counted from 0);
a PDF page is rendered in gray at SCANDIGITS_PDF_DPI, its size in pixels checked from its size
in points before it is rendered. The limits are the process's settings (worker.settings).
"""

from __future__ import annotations

import io
import itertools
import struct
import threading
from collections.abc import Iterator
from contextlib import closing

import cv2
import numpy as np
import pypdfium2 as pdfium
from PIL import Image

from trainer.errors import DecodeError
from worker import settings
from worker.reading.preprocess import spreads

JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Formats Pillow and OpenCV both read, by the same header: a file Pillow takes for any other
# format could be one OpenCV decodes by a header whose size was never checked.
FORMATS = frozenset(
    ["AVIF", "BMP", "GIF", "JPEG", "JPEG2000", "MPO", "PNG", "PPM", "SUN", "TIFF", "WEBP"]
)
_EXPECTED = "expected PNG, JPEG, BMP, TIFF, WebP, GIF, PDF"
_UNSUPPORTED = f"not a readable image (format not supported or header damaged; {_EXPECTED})"
Image.MAX_IMAGE_PIXELS = None  # SCANDIGITS_MAX_PIXELS is the limit, with its own error
# `decode_reduced` decodes a large JPEG at 1/2, 1/4 or 1/8 scale inside the codec, as long as
# its short side keeps this many pixels: preprocessing works at 512×512 pixels' worth at most,
# and on 600×600 scans reading at 1/2 or even 1/4 scale was as accurate as at full size.
REDUCED_MIN_SIDE = 200
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)
# Drop-out print: against the paper's own colour, a light colour (brightest channel at least
# LIGHT, the channels at least SATURATED apart) away from dark ink, in a straight line across
# RULE of a field's width: a box's rule. A faint blue digit is as light a colour, but none of
# its strokes is that long, unless it is the field's only digit: then no ink is left where the
# print would vanish (the channel's ink under KEPT of the gray's), and the gray is read.
LIGHT, SATURATED, RULE, KEPT = 0.8, 0.08, 0.4, 0.33
HUE = 0.97  # cosine between a pixel's shade and the print's for the pixel to be print
TILT = 9  # px: a rule's rows may drift this much along it (a field scanned turned a little)
ALONG = 7  # px: colours are averaged along rows over this many, against the scanner's noise
PAPER = 21  # px: print left in the channel is filled with the mean of the clear paper this near
WRITTEN = 0.8  # share of a field's height a mark of writing spans at most
LOST = 0.1  # a pixel this much darker in the gray than in the channel (of the paper) lost ink
MARK = 0.2  # a mark spread across it less than this of its spread along it is a line
_FULL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # full scale of integer pixels
# PDFium is not thread-safe, not even across documents: one call into it at a time.
_pdfium = threading.Lock()
_PDF_ERRORS = {
    pdfium.raw.FPDF_ERR_PASSWORD: "password protected",
    pdfium.raw.FPDF_ERR_SECURITY: "unsupported encryption",
}


def decode(data: bytes, page: int = 0) -> np.ndarray:
    """Return page `page` (from 0) of the image as 2-D float32 gray, with alpha composited
    over white paper."""
    return _decode(data, reduce=False, page=page)[0]


def decode_reduced(data: bytes, page: int = 0) -> tuple[np.ndarray, int]:
    """Like `decode`, but a JPEG far larger than the reader needs comes at 1/2, 1/4 or 1/8 scale
    (REDUCED_MIN_SIDE); returns the image and that factor: scan pixels per image pixel."""
    gray, _, factor = _decode(data, reduce=True, page=page)
    return gray, factor


def decode_colour(data: bytes, page: int = 0) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Like `decode_reduced`, with the image's colours (BGR, None for a gray scan) for
    `writing` to read a field from: (gray, colour, factor)."""
    return _decode(data, reduce=True, page=page)


def writing(gray: np.ndarray, colour: np.ndarray | None) -> np.ndarray:
    """The plane to read a field's writing from: its gray, or when its print is in a light
    drop-out colour (red or blue boxes), the colour channel where that print vanishes while
    black or blue-black writing stays dark."""
    if colour is None:
        return gray
    scale = _FULL.get(colour.dtype, 1.0)
    paper = np.median(colour[::2, ::2].reshape(-1, 3), axis=0).astype(np.float32) / scale
    balanced = np.minimum(colour.astype(np.float32) / (scale * np.maximum(paper, 1e-3)), 1.0)
    along = cv2.blur(balanced, (ALONG, 1))  # the scanner's colour noise averaged along rows
    high, low = _extremes(along)
    light = (high >= LIGHT) & (high - low >= SATURATED)
    if not light.any():
        return gray
    dark = cv2.dilate((_extremes(balanced)[0] < LIGHT).astype(np.uint8), np.ones((5, 5), np.uint8))
    light = (light & (dark == 0)).astype(np.uint8)
    w = gray.shape[1]
    tilted = cv2.dilate(light, np.ones((TILT, 1), np.uint8))
    long = cv2.morphologyEx(tilted, cv2.MORPH_OPEN, np.ones((1, max(8, round(RULE * w))), np.uint8))
    lines = (long > 0) & (light > 0)
    if not lines.any():
        return gray
    print_colour = 1.0 - np.median(balanced[lines], axis=0)  # how the print darkens each channel
    channel = int(np.argmin(print_colour))
    plane = colour[:, :, channel].astype(np.float32) / np.float32(scale)
    # what is left of the print where a JPEG blurred its colours (the line's middle, darker in
    # the channel) is still of the print's hue at the colours' own coarser resolution
    shade = 1.0 - cv2.blur(balanced, (3, 3))
    strength = np.sqrt((shade * shade).sum(axis=2))
    hue = shade @ print_colour / np.maximum(strength * np.linalg.norm(print_colour), 1e-6)
    faded = (hue >= HUE) & (strength <= 2 * np.linalg.norm(print_colour))
    # ...and is filled with the clear paper around it, as lit there (the page's typical paper
    # is darker or lighter than a lit or shaded part of it: the print would show as a ghost)
    fill = faded & (balanced[:, :, channel] >= LIGHT - 0.2)
    clear = ((dark == 0) & ~fill).astype(np.float32)
    weight = cv2.blur(clear, (PAPER, PAPER))
    around = cv2.blur(plane * clear, (PAPER, PAPER)) / np.maximum(weight, 1e-6)
    # (the page's own where hardly any clear paper is near: a tangle of writing)
    plane[fill] = np.where(weight > 0.05, around, paper[channel])[fill]
    # writing in the print's colour (a blue pen on a blue box), or light in that channel,
    # vanishes with it: a mark of the print's hue, or one the gray shows and the channel does
    # not, apart from the print and no line, is read in the gray
    level = max(float(np.median(gray[::2, ::2])), 1e-3)
    lost = (plane / paper[channel]) - (gray / level) >= LOST
    own = _apart(faded, lines) | _apart(lost, lines)
    plane[own] = gray[own] * np.float32(paper[channel] / level)
    return plane if _contrast(plane) >= KEPT * _contrast(gray) else gray


def _apart(ink: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The marks of `ink` (of the print's hue, or lost in the channel) that are writing: apart
    from the rules found (`lines`; a pixel's break bridged) and within their ends with a margin
    (a box's side is at their ends), an eighth of the image's short side tall or wide (not the
    paper's specks) but no more than WRITTEN of its height (a piece of a comb), and no line:
    their ink spread across them at least MARK of its spread along them."""
    bridged = cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8))
    _, parts, stats, _ = cv2.connectedComponentsWithStats(bridged, None, 8)
    x, w, h = (stats[:, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    columns = np.flatnonzero(lines.any(axis=0))
    margin = max(3.0, 0.02 * ink.shape[1])
    sized = (np.maximum(w, h) >= min(ink.shape) / 8) & (np.maximum(w, h) <= WRITTEN * len(ink))
    within = (x >= columns[0] + margin) & (x + w <= columns[-1] + 1 - margin)
    candidate = sized & within
    candidate[parts[lines]] = False
    candidate[0] = False
    marks = np.where(ink, parts, 0)
    across, along = spreads(marks, len(stats))
    pixels = np.bincount(marks.ravel(), minlength=len(stats))
    return (candidate & (pixels >= 3) & (across >= MARK * along))[marks]


def _contrast(plane: np.ndarray) -> float:
    """How much darker than the paper (the median) a plane's darkest ink is, over 3×3 pixels."""
    return float(np.median(plane[::2, ::2])) - float(cv2.blur(plane, (3, 3)).min())


def _extremes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's brightest and darkest channel of a 3-channel image."""
    b, g, r = cv2.split(image)
    return np.maximum(np.maximum(b, g), r), np.minimum(np.minimum(b, g), r)


def pages(data: bytes) -> int:
    """How many pages the file holds: a PDF's pages, a TIFF's images, 1 for other images.
    A file `decode` refuses by its size, a PDF that cannot be opened, or a file of more than
    the page limit is a DecodeError."""
    _check_size(data)
    if _is_pdf(data):
        with _pdfium, closing(_open_pdf(data)) as document:
            return _checked(len(document))
    if data[:4] in TIFF_MAGIC:
        limit = settings.current().max_pages
        directories = itertools.islice(_tiff_directories(data), limit + 1)
        return _checked(max(1, sum(1 for _ in directories)))  # junk: `decode` says what is wrong
    return 1


def _checked(count: int, page: int = 0) -> int:
    """`count`, if page `page` (from 0) is one of them and they are within the page limit."""
    limit = settings.current().max_pages
    if count > limit:
        raise DecodeError(f"too many pages (limit {limit:,})")
    if not 0 <= page < count:
        raise DecodeError(f"no page {page + 1} (the file has {count})")
    return count


def _check_size(data: bytes) -> None:
    if not data:
        raise DecodeError("empty file")
    limit = settings.current().max_bytes
    if len(data) > limit:
        raise DecodeError(f"file too large ({len(data):,} bytes; limit {limit:,})")


def _decode(data: bytes, reduce: bool, page: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    _check_size(data)
    if _is_pdf(data):
        return *_pdf(data, page), 1
    _checked(pages(data), page)
    width, height = _size(data, page)
    limit = settings.current().max_pixels
    if width * height > limit:
        raise DecodeError(f"image too large ({width}×{height} pixels; limit {limit:,} pixels)")
    # JPEGs decode in colour, EXIF orientation applied; others keep alpha and depth too.
    factor, flags = 1, cv2.IMREAD_UNCHANGED
    if data.startswith(JPEG_MAGIC):
        short = min(width, height) if reduce else 0
        factor, flags = next(
            ((f, flag) for f, flag in _REDUCED if short // f >= REDUCED_MIN_SIDE),
            (1, cv2.IMREAD_COLOR),
        )
    try:
        buffer = np.frombuffer(data, np.uint8)
        if page:
            _, images = cv2.imdecodemulti(buffer, flags, range=(page, page + 1))
            image = images[0] if images else None
        else:
            image = cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        too_large = "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
        raise DecodeError(
            f"image too large (limit {limit:,} pixels)" if too_large else "not a readable image"
        ) from exc
    if image is None or image.size == 0:
        raise DecodeError(f"not a readable image ({_EXPECTED})")
    return *_planes(image), factor


def _is_pdf(data: bytes) -> bool:
    return data.startswith(b"%PDF-")


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    """The PDF as a PDFium document (the caller holds `_pdfium`), or a one-line DecodeError."""
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = _PDF_ERRORS.get(exc.err_code, "damaged or not a PDF")
        raise DecodeError(f"not a readable PDF ({reason})") from exc


def _pdf(data: bytes, page: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Page `page` of a PDF rendered at the set DPI (_planes); a page whose bitmap would
    exceed the pixel limit is refused from its size in points, before anything is rendered."""
    limits = settings.current()
    scale = limits.pdf_dpi / 72  # PDF sizes are in points, 72 to the inch
    with _pdfium, closing(_open_pdf(data)) as document:
        _checked(len(document), page)
        try:
            width, height = (side * scale for side in document.get_page_size(page))
            if width * height > limits.max_pixels:
                raise DecodeError(
                    f"page {page + 1} too large ({width:.0f}×{height:.0f} pixels at "
                    f"{limits.pdf_dpi:g} dpi; limit {limits.max_pixels:,} pixels)"
                )
            bitmap = document[page].render(scale=scale)  # BGR
        except pdfium.PdfiumError as exc:
            raise DecodeError(f"page {page + 1} of the PDF is not readable") from exc
        with closing(bitmap):
            return _planes(bitmap.to_numpy())


def _planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A decoded image as a float32 gray plane in [0, 1] (8- and 16-bit need no clipping;
    alpha composited over white paper) and, for a colour image, its BGR colours."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = _composited(image)
    if image.ndim == 3 and _grey(image):  # a gray JPEG decoded in colour, or a gray PNG
        image = np.ascontiguousarray(image[:, :, 0])
    scale = _FULL.get(image.dtype)
    if scale:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        gray = gray.astype(np.float32)
        gray /= np.float32(scale)
    else:
        image = np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return gray, image if image.ndim == 3 else None


def _grey(image: np.ndarray) -> bool:
    """Whether a 3-channel image's channels are all the same."""
    return bool(
        np.array_equal(image[:, :, 0], image[:, :, 1])
        and np.array_equal(image[:, :, 1], image[:, :, 2])
    )


def _composited(image: np.ndarray) -> np.ndarray:
    """A BGRA image's colours over white paper, as float32 in [0, 1]."""
    scale = _FULL.get(image.dtype, 1.0)
    image = np.clip(np.nan_to_num(image.astype(np.float32) / np.float32(scale)), 0.0, 1.0)
    alpha = image[:, :, 3:]
    return image[:, :, :3] * alpha + (1.0 - alpha)


def dimensions(data: bytes, page: int = 0) -> tuple[int, int] | None:
    """(width, height) of page `page` (from 0) from the file's header (_size); None for a file
    `decode` refuses unread, or no such page."""
    try:
        return _size(data, page)
    except DecodeError:
        return None


def _size(data: bytes, page: int) -> tuple[int, int]:
    """(width, height) of page `page` (from 0) as Pillow reads it from the header, decoding
    nothing. A file Pillow cannot read, or reads as a format not in FORMATS, is a DecodeError.

    Pillow would reach a TIFF's page through every directory before it, for each page as much
    Python work as the file is long; instead the header's pointer to the first directory is set
    to the page's own, found along the chain (_tiff_directories)."""
    if page:
        tiff = data[:4] in TIFF_MAGIC
        offset = next(itertools.islice(_tiff_directories(data), page, None), None) if tiff else None
        if offset is None:
            raise DecodeError(f"no page {page + 1}")
        order = "<" if data.startswith(b"II") else ">"
        data = data[:4] + struct.pack(order + "I", offset) + data[8:]
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format in FORMATS:
                return image.size
    except Exception as exc:  # Pillow's parsers fail in many ways on a hostile header
        raise DecodeError(_UNSUPPORTED) from exc
    raise DecodeError(_UNSUPPORTED)


def _tiff_directories(data: bytes) -> Iterator[int]:
    """Offsets of a TIFF's image file directories (one per page) along their chain, up to a
    loop or to where the file is cut short."""
    order = "<" if data.startswith(b"II") else ">"
    seen: set[int] = set()
    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        while offset and offset not in seen:
            seen.add(offset)
            (count,) = struct.unpack(order + "H", data[offset : offset + 2])
            yield offset
            end = offset + 2 + 12 * count
            (offset,) = struct.unpack(order + "I", data[end : end + 4])
    except struct.error:
        return
