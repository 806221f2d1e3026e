"""Segmentation on hand-made fields: separate digits, a touching pair, a broken digit, a boxed
and an underlined field, noise specks, and a digit's box in scan pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trainer import samples, specimens
from trainer.errors import NoInkError
from worker.reading.decode import decode_colour, writing
from worker.reading.pieces import Run
from worker.reading.preprocess import beside
from worker.reading.printed import _lattice, _sides
from worker.reading.segment import segment

HEIGHT = 60  # digit height in the hand-made fields, pixels


def draw(canvas: np.ndarray, glyph: str, x: int, y: int = 40, thickness: int = 5) -> int:
    """Draw a simple '0', '1' or '7' of HEIGHT px with its top-left at (x, y); return its width."""
    width = {"0": 36, "1": 4, "7": 34}[glyph]
    if glyph == "0":
        cv2.ellipse(canvas, (x + 18, y + 30), (16, 28), 0, 0, 360, 1.0, thickness, cv2.LINE_AA)
    elif glyph == "1":
        cv2.line(canvas, (x + 2, y), (x + 2, y + HEIGHT), 1.0, thickness, cv2.LINE_AA)
    else:
        points = np.int32([[x, y + 2], [x + 34, y + 2], [x + 12, y + HEIGHT]])
        cv2.polylines(canvas, [points], False, 1.0, thickness, cv2.LINE_AA)
    return width


def scan(ink: np.ndarray) -> np.ndarray:
    """Dark ink on light paper, as a float gray scan."""
    return 1.0 - 0.8 * np.clip(ink, 0, 1)


def field(glyphs: str, gap: int = 20, size: tuple[int, int] = (140, 420)) -> np.ndarray:
    ink = np.zeros(size, np.float32)
    x = 30
    for glyph in glyphs:
        x += draw(ink, glyph, x) + gap
    return ink


def whole(runs: list[Run]) -> list:
    """Each run's first reading: its ink as it lies, nothing cut or joined."""
    return [run.options()[0].pieces for run in runs]


def test_separate_digits_come_left_to_right_with_boxes() -> None:
    digits = whole(segment(scan(field("707"))).runs)
    assert len(digits) == 3 and all(len(pieces) == 1 for pieces in digits)
    lefts = [pieces[0].box[0] for pieces in digits]
    assert lefts == sorted(lefts)
    x, y, w, h = digits[0][0].box
    assert abs(x - 30) <= 4 and abs(y - 40) <= 4 and abs(h - HEIGHT) <= 6 and abs(w - 36) <= 6
    assert all(pieces[0].image.shape == (28, 28) for pieces in digits)


def test_touching_pair_is_offered_split_at_the_joint() -> None:
    ink = np.zeros((140, 300), np.float32)
    draw(ink, "0", 30)
    draw(ink, "0", 30 + 34)  # overlaps the first by 2 px
    (run,) = segment(scan(ink)).runs
    assert [len(option.pieces) for option in run.options()] == [1]  # not cut unless asked
    group = run.options(cut=run.marks)
    assert len(group[0].pieces) == 1  # as it lies first
    pairs = [option.pieces for option in group if len(option.pieces) == 2]
    assert pairs and all(option.joins == 0 for option in group)
    cuts = [pieces[0].box[0] + pieces[0].box[2] for pieces in pairs]
    assert min(abs(c - 65) for c in cuts) <= 4


def test_narrow_digit_touching_a_neighbour_is_offered_cut_off() -> None:
    ink = np.zeros((140, 300), np.float32)
    draw(ink, "0", 30)
    draw(ink, "0", 30 + 34)
    draw(ink, "1", 30 + 34 + 36)  # against the 0's right side: far from an even three-way split
    (run,) = segment(scan(ink)).runs
    threes = [o.pieces for o in run.options(cut=run.marks) if len(o.pieces) == 3]
    ends = [[p.box[0] + p.box[2] for p in pieces[:2]] for pieces in threes]
    assert min(abs(a - 65) + abs(b - 100) for a, b in ends) <= 8


def test_broken_digit_is_one_group() -> None:
    ink = field("7")
    cv2.line(ink, (48, 60), (62, 60), 0.0, 9)  # break the stem of the 7 across
    ink[40:48, 40:50] = 0  # and a gap in its bar
    groups = segment(scan(ink)).runs
    assert len(groups) == 1


def test_box_lines_are_removed() -> None:
    ink = field("707")
    cv2.rectangle(ink, (10, 25), (400, 115), 1.0, 3)
    digits = whole(segment(scan(ink)).runs)
    assert len(digits) == 3
    for (piece,) in digits:
        _, _, w, h = piece.box
        assert w < 50 and h < 70  # no piece of the box joined any digit


def test_writing_lighter_than_its_box_is_found() -> None:
    ink = 0.4 * field("707")  # pencil-grey digits in a black printed box
    cv2.rectangle(ink, (10, 25), (400, 115), 1.0, 3)
    digits = whole(segment(scan(ink)).runs)
    assert len(digits) == 3 and all(piece.box[3] > 50 for (piece,) in digits)


def test_underline_touching_the_digits_is_removed() -> None:
    ink = field("1707")
    cv2.line(ink, (10, 101), (410, 101), 1.0, 3)  # touches the digits' feet
    digits = whole(segment(scan(ink)).runs)
    assert len(digits) == 4
    assert all(piece.box[3] < 70 for (piece,) in digits)


@pytest.mark.parametrize("thick", [2, 7, 12])
@pytest.mark.parametrize("glyph", ["0", "1", "7"])
def test_a_box_around_one_digit_is_not_read(glyph: str, thick: int) -> None:
    """A cell for one digit: its top and bottom are shorter than a 1 is tall, its sides as
    long, and the box alone is a mark as tall as the writing or taller (it was read as a 0);
    drawn thick, its lines are no thinner than a pen's stroke."""
    ink = np.zeros((170, 150), np.float32)
    cv2.rectangle(ink, (45, 30), (105, 130), 1.0, thick)
    draw(ink, glyph, 73 if glyph == "1" else 58, y=50)
    found = segment(scan(ink))
    assert len(found.marks) == 1 and not found.left_out and not found.unread
    (mark,) = found.marks  # the box is 60 px wide and 100 tall
    assert mark.box[3] < 70 and mark.box[2] < 50


@pytest.mark.parametrize(("glyph", "x", "y"), [("0", 20, 50), ("7", 30, 50), ("0", 58, 95)])
def test_a_box_around_one_digit_written_out_of_it_is_not_read(glyph: str, x: int, y: int) -> None:
    """A digit written over its box's side or bottom and out of it: the box and the digit are
    one mark no longer inked in its outer corners, and the box is still print (it was read with
    the digit: a 2 as 9); the digit's marks hold none of it."""
    ink = np.zeros((190, 150), np.float32)
    cv2.rectangle(ink, (45, 30), (105, 130), 1.0, 3)
    width = draw(ink, glyph, x, y=y)
    found = segment(scan(ink))
    assert found.marks and not found.left_out and not found.unread
    boxes = np.array([mark.box for mark in found.marks])
    lefts, tops = boxes[:, :2].min(axis=0)
    rights, bottoms = (boxes[:, :2] + boxes[:, 2:]).max(axis=0)
    assert rights - lefts <= width + 8 and bottoms - tops <= HEIGHT + 8  # the digit's pieces


@pytest.mark.parametrize("glyphs", ["07", "70"])
def test_a_box_side_broken_along_a_third_of_it_is_not_read(glyphs: str) -> None:
    """A box's side printed faintly, its lower third gone from the scan (a drop-out box's ghost
    in the plane read): what is left of it stands where the rules end, straight, and is print
    (it was read as a 1 beside the digits)."""
    ink = np.zeros((170, 260), np.float32)
    cv2.rectangle(ink, (30, 30), (230, 130), 1.0, 2)
    ink[97:129, 29:33] = 0
    x = 60
    for glyph in glyphs:
        x += draw(ink, glyph, x, y=50) + 40
    found = segment(scan(ink))
    assert len(found.marks) == 2 and not found.left_out and not found.unread
    assert all(mark.box[0] > 50 for mark in found.marks)


@pytest.mark.parametrize("glyph", ["0", "1", "7"])
def test_a_short_underline_under_one_digit_is_not_read(glyph: str) -> None:
    """A line under one digit, half again as wide as the digit is tall: it touches no ink, and
    no digit is a lone bar that long (it was read as a 2's base)."""
    ink = field(glyph, size=(140, 160))
    cv2.line(ink, (15, 110), (110, 110), 1.0, 3)
    found = segment(scan(ink))
    assert len(found.marks) == 1 and not found.left_out and not found.unread
    assert found.marks[0].box[3] < 70


@pytest.mark.parametrize(("thick", "blur"), [(7, 2.5), (11, 2.0), (13, 1.5)])
@pytest.mark.parametrize("glyph", ["0", "1", "7"])
def test_a_bold_dark_underline_under_one_light_digit_is_not_read(
    glyph: str, thick: int, blur: float
) -> None:
    """A light digit over a short, bold, blurred underline far darker than it: the line is a
    printed line however thick for its length (one was at most 6 px more than a twentieth of
    its length), its blurred edges are its own, not writing touching it, and its ink to half
    its pen above and below goes with it. It was the field's only mark, read as a 2, and the
    digit, too light for the line's level, went unnamed."""
    ink = 0.3 * field(glyph, size=(150, 160))
    cv2.line(ink, (15, 116), (105, 116), 1.0, thick)
    found = segment(scan(cv2.GaussianBlur(ink, (0, 0), blur)))
    assert len(found.marks) == 1 and not found.left_out
    _, y, _, h = found.marks[0].box
    assert abs(y - 40) <= 6 and 100 <= y + h <= 108  # the digit and its blur, none of the line


def test_noise_specks_are_ignored() -> None:
    rng = np.random.default_rng(0)
    ink = field("70")
    for _ in range(30):
        y, x = rng.integers(3, 137), rng.integers(3, 417)
        cv2.circle(ink, (int(x), int(y)), 1, 1.0, -1)
    gray = scan(ink) + rng.normal(0, 0.03, ink.shape).astype(np.float32)
    digits = whole(segment(np.clip(gray, 0, 1)).runs)
    assert len(digits) == 2
    assert [piece.box[2] > 25 for (piece,) in digits] == [True, True]


@pytest.mark.parametrize("print_", ["none", "underline", "box"])
def test_a_blank_field_with_dust_has_no_ink(print_: str) -> None:
    """A field left blank: its dust, its grain and what its print leaves are no digit (they
    were read as 8s, 2s and 5s)."""
    rng = np.random.default_rng(1)
    ink = np.zeros((140, 420), np.float32)
    if print_ == "underline":
        cv2.line(ink, (40, 110), (380, 110), 1.0, 2)
    elif print_ == "box":
        cv2.rectangle(ink, (30, 20), (390, 120), 1.0, 2)
    for _ in range(12):
        y, x = rng.integers(3, 137), rng.integers(3, 417)
        cv2.circle(ink, (int(x), int(y)), 1, 0.6, -1)
    gray = scan(ink) + rng.normal(0, 0.02, ink.shape).astype(np.float32)
    with pytest.raises(NoInkError):
        segment(np.clip(gray, 0, 1))


def test_a_small_digit_on_a_large_scan_is_read() -> None:
    """A single digit's scan may have broad margins: a 7 a fifteenth of the scan's height is
    no speck, being taller than MNIST's digits."""
    ink = np.zeros((600, 300), np.float32)
    cv2.polylines(ink, [np.int32([[130, 282], [160, 282], [140, 322]])], False, 1.0, 4)
    found = segment(scan(ink))
    assert len(found.marks) == 1 and not found.left_out


def test_broken_zero_is_offered_whole() -> None:
    ink = np.zeros((140, 200), np.float32)
    centre, axes = (70, 70), (22, 30)
    cv2.ellipse(ink, centre, axes, 0, 100, 260, 1.0, 5, cv2.LINE_AA)  # left half
    cv2.ellipse(ink, centre, axes, 0, -75, 75, 1.0, 5, cv2.LINE_AA)  # right half, apart
    (run,) = segment(scan(ink)).runs
    group = run.options()
    assert [(len(o.pieces), o.joins) for o in group] == [(2, 0), (1, 1)]
    (joined,) = group[-1].pieces
    x, _, w, h = joined.box
    assert abs(x - 46) <= 4 and abs(w - 48) <= 6 and abs(h - 62) <= 6


def test_a_long_stroke_does_not_set_the_slant() -> None:
    ink = field("101")
    cv2.line(ink, (200, 100), (370, 70), 1.0, 9, cv2.LINE_AA)  # wider than tall, heavier than all
    line = segment(scan(ink)).line
    _, _, stats, _ = cv2.connectedComponentsWithStats((line > 0.3).astype(np.uint8))
    first = stats[1 + np.argmin(stats[1:, cv2.CC_STAT_LEFT])]
    assert first[cv2.CC_STAT_WIDTH] <= 6  # the 1 stands upright in the reader's line


def marks_and_left_out(ink: np.ndarray) -> tuple[int, int]:
    found = segment(scan(ink))
    return len(found.marks), len(found.left_out)


def test_digits_far_apart_all_belong_to_the_field() -> None:
    ink = np.zeros((140, 1000), np.float32)
    for x in (30, 150, 420, 860):  # gaps of 1.4 to 6 digit heights
        draw(ink, "7", x)
    found = segment(scan(ink))
    assert len(found.marks) == 4 and not found.left_out
    assert len(whole(found.runs)) == 4
    # the reader's line closes the gaps: its ink spans little more than four digits
    columns = np.flatnonzero(found.line.max(axis=0) > 0.3)
    assert columns.max() - columns.min() < 4 * 20 + 3 * 0.3 * 20 + 10


def test_a_faint_digit_is_found() -> None:
    ink = field("7070")
    faint = np.zeros_like(ink)
    draw(faint, "7", 320)
    found = segment(scan(ink + 0.2 * faint))  # a fifth as dark as its neighbours
    assert len(found.marks) == 5 and not found.left_out
    assert found.marks[-1].box[0] >= 310


def test_a_faint_digit_on_grainy_paper_is_found() -> None:
    """Each of the faint 7's pixels is within the paper's grain; its strokes are not."""
    ink = field("707", gap=40)
    faint = np.zeros_like(ink)
    draw(faint, "7", 320)
    grain = np.random.default_rng(0).normal(0.0, 0.04, ink.shape)
    found = segment(np.clip(scan(ink + 0.1 * faint) + grain, 0, 1).astype(np.float32))
    assert len(found.marks) == 4 and found.marks[-1].box[0] >= 310


def test_a_faint_digit_close_beside_a_dark_one_is_found() -> None:
    """The blur that finds faint marks joins a light 0 to the dark 0 a few pixels away: the
    light ink away from the dark is of a digit's size, so it is ink of the field too."""
    ink = field("70")  # the 0 ends at x = 120
    faint = np.zeros_like(ink)
    draw(faint, "0", 124)
    found = segment(scan(ink + 0.2 * faint))
    x, _, w, _ = found.marks[-1].box
    assert x + w >= 124 + 36 - 4 and not found.left_out


@pytest.mark.parametrize("light", [0.15, 0.3])
def test_a_faint_digit_in_a_box_is_read_whole(light: float) -> None:
    """A light 0 among dark digits in a box: found as one mark of a digit's size, not as the
    specks its darkest pixels make, and not as part of the box."""
    ink = field("7070", size=(160, 440))
    cv2.rectangle(ink, (10, 20), (430, 125), 1.0, 2)
    faint = np.zeros_like(ink)
    draw(faint, "0", 340)
    found = segment(scan(ink + light * faint))
    assert len(found.marks) == 5 and not found.left_out
    x, y, _, h = found.marks[-1].box
    assert abs(x - 340) <= 6 and abs(y - 40) <= 6 and abs(h - HEIGHT) <= 8


@pytest.mark.parametrize("thick", [9, 10])
def test_a_blurred_bold_box_leaves_no_part_of_itself(thick: int) -> None:
    """A bold box blurred by the scan, around one light digit: the mask is broader than the
    line found, either side of it all along; that blur is no stroke crossing the line, and the
    line goes (its pieces stayed, as marks of a digit's size off the line)."""
    ink = np.zeros((170, 160), np.float32)
    cv2.rectangle(ink, (30, 20), (130, 150), 1.0, thick)
    digit = np.zeros_like(ink)
    draw(digit, "7", 62, y=55, thickness=3)
    ink = cv2.GaussianBlur(np.maximum(ink, 0.25 * digit), (0, 0), 2.5)
    grain = np.random.default_rng(0).normal(0, 0.02, ink.shape)
    found = segment(np.clip(scan(ink) + grain, 0, 1).astype(np.float32))
    assert len(found.marks) == 1 and not found.left_out and not found.unread
    assert found.marks[0].box[3] < 75


@pytest.mark.parametrize("seed", range(3))
def test_the_grain_left_once_a_dark_box_is_gone_is_no_digit(seed: int) -> None:
    """A light 7 in a dark box on grainy paper lit less toward the scan's edges: with the box
    taken out, the writing's own threshold falls into the paper's grain, which clumped into
    marks of a digit's size where the paper is darker (read as 1s beside the 7)."""
    ink = np.zeros((200, 200), np.float32)
    cv2.rectangle(ink, (45, 45), (155, 160), 1.0, 3)
    digit = np.zeros_like(ink)
    draw(digit, "7", 80, y=70, thickness=4)
    gray = cv2.GaussianBlur(scan(np.maximum(ink, 0.25 * digit)), (0, 0), 1.5)
    y, x = np.mgrid[-1:1:200j, -1:1:200j]
    gray = gray * (1 - 0.15 * (x * x + y * y))
    gray += np.random.default_rng(seed).normal(0, 0.03, gray.shape)
    found = segment(np.clip(gray, 0, 1).astype(np.float32))
    assert len(found.marks) == 1 and not found.left_out and not found.unread
    x, y, w, h = found.marks[0].box  # the 7, give or take a speck of grain by its strokes
    assert 66 <= x <= 80 and 112 <= x + w <= 128 and abs(y - 70) <= 10 and abs(h - HEIGHT) <= 12


def test_a_digit_too_light_to_be_a_mark_is_named_unread() -> None:
    """A 0 that stands out of the paper, but too lightly to be a mark of the writing, is named
    with its box: it may be a digit the reading leaves out."""
    ink = field("707", gap=40)
    faint = np.zeros_like(ink)
    draw(faint, "0", 320, thickness=3)
    found = segment(scan(ink + 0.04 * faint))
    assert len(found.marks) == 3
    ((x, y, _, h),) = found.unread
    assert abs(x - 320) <= 6 and abs(y - 40) <= 6 and abs(h - HEIGHT) <= 8


def textured(ink: np.ndarray, seed: int) -> np.ndarray:
    """A scan of `ink` on paper whose level wanders (a texture as wide as a stroke is long)
    as much as its grain varies from pixel to pixel."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 1, ink.shape).astype(np.float32), (0, 0), 6)
    paper = scan(ink) + rng.normal(0, 0.03, ink.shape) + 0.03 * texture / texture.std()
    return np.clip(paper, 0, 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_a_thin_light_digit_on_textured_paper_is_named_unread(seed: int) -> None:
    """A thin-penned 0 a tenth as dark as its neighbours: no brighter than the paper's own
    blotches, it is still a stroke above the paper around it, and is named."""
    ink = field("707", gap=40)
    faint = np.zeros_like(ink)
    draw(faint, "0", 320, thickness=2)
    found = segment(textured(ink + 0.1 * faint, seed))
    assert len(found.marks) == 3
    ((x, y, w, h),) = found.unread
    assert x <= 324 and x + w >= 350 and abs(y - 40) <= 6 and abs(h - HEIGHT) <= 8


@pytest.mark.parametrize("seed", range(3))
def test_a_thin_light_digit_on_textured_paper_is_read(seed: int) -> None:
    """A thin-penned 0 a fifth as dark as its neighbours on blotchy paper passes the field's
    thresholds only in specks; split from the paper around it at its own level, it is a mark
    of the field (with a blotch beside it, maybe), not ink named unread."""
    ink = field("7070", size=(160, 440))
    faint = np.zeros_like(ink)
    draw(faint, "0", 340, thickness=2)
    found = segment(textured(ink + 0.18 * faint, seed))
    assert len(found.marks) == 5 and not found.unread and not found.left_out
    x, y, w, h = found.marks[-1].box
    assert x <= 344 and x + w >= 372 and abs(y - 40) <= 6 and abs(h - HEIGHT) <= 12


@pytest.mark.parametrize("seed", range(3))
def test_textured_paper_leaves_nothing_unread(seed: int) -> None:
    found = segment(textured(field("7070"), seed))
    assert len(found.marks) == 4 and not found.unread and not found.left_out


@pytest.mark.parametrize("seed", range(3))
def test_grainy_paper_leaves_nothing_unread(seed: int) -> None:
    grain = np.random.default_rng(seed).normal(0.0, 0.04, (140, 420))
    found = segment(np.clip(scan(field("7070")) + grain, 0, 1).astype(np.float32))
    assert len(found.marks) == 4 and not found.unread and not found.left_out


@pytest.mark.parametrize("glyphs", ["707", "77"])
def test_shaded_cells_leave_nothing_unread(glyphs: str) -> None:
    """Light grey cells, one digit in each, paper between them: the shade's edges are no ink."""
    ink = np.zeros((160, 40 + 80 * len(glyphs)), np.float32)
    shade = np.zeros_like(ink)
    for n, glyph in enumerate(glyphs):
        shade[25:135, 15 + 80 * n : 85 + 80 * n] = 0.12
        draw(ink, glyph, 32 + 80 * n)
    found = segment(scan(ink) - shade)
    assert len(found.marks) == len(glyphs) and not found.unread and not found.left_out


@pytest.mark.parametrize("glyph", ["0", "7"])
def test_a_box_lighter_than_the_digit_in_it_is_not_read(glyph: str) -> None:
    """A thin box printed at two fifths of the digit's darkness, blurred and grainy: too light for
    the print finding, it passed as a faint mark of its own and was read with the digit as one
    mark the box's size; a mark framing writing apart from it is a box, not a digit."""
    ink = np.zeros((200, 200), np.float32)
    draw(ink, glyph, 80, y=70)
    box = np.zeros_like(ink)
    cv2.rectangle(box, (45, 45), (155, 155), 1.0, 1)
    gray = cv2.GaussianBlur(scan(np.maximum(ink, 0.4 * box)), (0, 0), 1.0)
    gray += np.random.default_rng(0).normal(0, 0.02, gray.shape).astype(np.float32)
    found = segment(gray)
    assert len(found.marks) == 1 and found.marks[0].box[3] < 70 and not found.unread


@pytest.mark.parametrize("flip", [False, True])
def test_shading_at_the_edge_of_a_scan_is_no_digit(flip: bool) -> None:
    """Paper darkening over the last tenth of a boxed digit's scan (a scanner's shadow at the
    edge): the flattening leaves a light band along the rim, which passed as a faint digit of
    its own and was read as a 1 beside the digit; marks reaching the rim are not faint digits."""
    ink = np.zeros((200, 200), np.float32)
    draw(ink, "0", 80, y=70)
    cv2.rectangle(ink, (40, 40), (160, 160), 1.0, 1)
    shade = 0.1 * np.clip((np.linspace(0, 1, 200) - 0.9) / 0.1, 0, 1)
    gray = (scan(ink) - (shade[::-1] if flip else shade)[None, :]).astype(np.float32)
    found = segment(gray)
    assert [mark.box[2:] for mark in found.marks] == [(40, 63)] and not found.unread


def test_ink_that_was_all_print_has_no_light_writing_beside_it() -> None:
    """Once a field's print is taken out, nothing may be left: no light writing, no error."""
    blank = np.random.default_rng(0).uniform(0.0, 0.05, (60, 200)).astype(np.float32)
    assert not beside(blank).any()


def test_a_faint_filled_blot_is_no_digit() -> None:
    """Shading left at a scan's edge, or a light blot, covers its box: it is no pen stroke."""
    ink = np.zeros((140, 140), np.float32)
    draw(ink, "7", 40)
    cv2.circle(ink, (118, 70), 14, 0.12, -1, cv2.LINE_AA)
    grain = np.random.default_rng(0).normal(0.0, 0.01, ink.shape)
    found = segment(np.clip(scan(ink) + grain, 0, 1).astype(np.float32))
    assert len(found.marks) == 1 and not found.left_out and not found.unread


def test_a_mark_off_the_line_is_left_out_and_named() -> None:
    ink = field("707", size=(260, 420))
    draw(ink, "0", 300, y=170)  # below the line, as a stray note would be
    found = segment(scan(ink))
    assert len(found.marks) == 3
    ((x, y, _, h),) = found.left_out
    assert abs(x - 300) <= 6 and abs(y - 170) <= 6 and h > 50


def test_a_digits_part_written_high_beside_it_is_part_of_it() -> None:
    """A 4 written high, its arm apart from its stem and off the line of writing: the arm lies
    beside the stem, within its rows, so it is the 4's (it was left out, the stem read as a
    1); a note just above a digit, in none of its rows, is still left out."""
    ink = np.zeros((220, 420), np.float32)
    for x in (30, 100, 270, 340):
        draw(ink, "7", x, y=100)
    cv2.polylines(ink, [np.int32([[180, 80], [176, 104], [202, 104]])], False, 1.0, 5)
    cv2.line(ink, (210, 78), (210, 140), 1.0, 5)
    draw(ink, "0", 30, y=28)
    found = segment(scan(ink))
    assert len(found.marks) == 5 and len(found.left_out) == 1
    assert found.marks[2].box[0] <= 176 and found.left_out[0][1] < 40


def test_a_digits_part_broken_off_above_it_is_part_of_it() -> None:
    """A 5 broken where its stem meets its bowl, the bar and stem above the line of writing:
    they lie just over the bowl, in its columns, so they are the 5's (they were left out); a
    whole digit just above one, a note, is still left out."""
    ink = np.zeros((220, 420), np.float32)
    for x in (30, 100, 270, 340):
        draw(ink, "7", x, y=100)
    cv2.polylines(ink, [np.int32([[206, 84], [182, 84], [180, 104]])], False, 1.0, 5)
    cv2.ellipse(ink, (192, 134), (20, 22), 0, -100, 160, 1.0, 5)
    draw(ink, "0", 30, y=28)
    found = segment(scan(ink))
    assert len(found.marks) == 5 and len(found.left_out) == 1
    assert found.marks[2].box[1] <= 84 and found.left_out[0][1] < 40


def test_a_lone_digit_broken_into_upper_and_lower_halves_is_one_mark() -> None:
    """A 3 broken where its two bowls meet, the field's only digit: each half is as tall as
    the other, so neither is a part short of the digit, but they lie a pen's width apart, one
    over the other: one digit (the lower half was left out, the upper read as a 2)."""
    ink = np.zeros((200, 160), np.float32)
    cv2.ellipse(ink, (78, 64), (24, 22), 0, -160, 90, 1.0, 6)
    cv2.ellipse(ink, (78, 120), (26, 24), 0, -90, 160, 1.0, 6)
    found = segment(scan(ink))
    assert len(found.marks) == 1 and not found.left_out
    _, y, _, h = found.marks[0].box
    assert y <= 42 and h >= 100


def test_a_digit_broken_apart_off_the_line_is_one_mark() -> None:
    """A 2 whose light stroke broke where its hook meets its slant: the hook lies above the
    heavier base, off its line and over too few of its columns to be stacked on it, but a
    break's width from it, and the two are no wider than one digit (the hook was left out)."""
    ink = np.zeros((160, 240), np.float32)
    hook = np.int32([[143, 46], [160, 50], [163, 62], [152, 76]])
    base = np.int32([[148, 84], [112, 108], [142, 108]])
    cv2.polylines(ink, [hook, base], False, 1.0, 6, cv2.LINE_AA)
    found = segment(scan(ink))
    assert len(found.marks) == 1 and not found.left_out
    x, y, w, h = found.marks[0].box
    assert y <= 46 and y + h >= 108 and x + w >= 160


def test_a_light_one_alone_in_a_dark_box_is_found() -> None:
    """A 1 in pencil, the field's only writing, in a dark box: once the box is gone no ink
    passes for plain writing (it was "no ink found"); the light stroke is the digit, solid as
    a bar is, not shading."""
    ink = np.zeros((170, 150), np.float32)
    cv2.rectangle(ink, (45, 30), (105, 130), 1.0, 3)
    cv2.line(ink, (75, 52), (75, 110), 0.1, 7)
    grain = np.random.default_rng(0).normal(0.0, 0.005, ink.shape)
    found = segment(np.clip(scan(ink) + grain, 0, 1).astype(np.float32))
    ((mark,),) = [found.marks]
    assert abs(mark.box[0] - 72) <= 6 and mark.box[3] >= 50


def comb(cells: int, ticks: str, glyphs: str, thick: int = 2) -> np.ndarray:
    """A comb box of `cells` cells 80 px wide, divided by `ticks` ("up": short ticks rising
    from the bottom line, "down": hanging from the top, "full": full-height dividers), with a
    glyph written in each cell; a 1 stands on the bottom line, as straight as a tick."""
    ink = np.zeros((170, 40 + 80 * cells), np.float32)
    top, bottom = 25, 135
    cv2.rectangle(ink, (20, top), (20 + 80 * cells, bottom), 1.0, thick)
    for n in range(1, cells):
        x = 20 + 80 * n
        ends = {"up": (bottom - 40, bottom), "down": (top, top + 40), "full": (top, bottom)}
        cv2.line(ink, (x, ends[ticks][0]), (x, ends[ticks][1]), 1.0, thick)
    for n, glyph in enumerate(glyphs):
        draw(ink, glyph, 20 + 80 * n + (38 if glyph == "1" else 22), y=74 if glyph == "1" else 50)
    return ink


@pytest.mark.parametrize("ticks", ["up", "down", "full"])
def test_comb_ticks_and_dividers_are_not_read(ticks: str) -> None:
    found = segment(scan(comb(6, ticks, "701170")))
    assert len(found.marks) == 6 and not found.left_out and not found.unread
    for mark in found.marks:  # no tick joined a digit
        assert mark.box[3] < 70 and mark.box[2] < 45


@pytest.mark.parametrize("ticks", ["up", "down", "full"])
def test_a_tick_a_digit_touches_is_not_read(ticks: str) -> None:
    """A 0 written against a tick or divider: the tick is one stroke with the 0, but at the
    rule it is a stub as narrow as the free ticks, on their lattice, so it goes as theirs do
    (it hung under or over the 0, a mark taller than a digit, or read as a 1)."""
    ink = comb(6, ticks, "7070")
    draw(ink, "0", 338, y=50)  # its left side on the tick at x = 340, off the tick's foot
    draw(ink, "7", 442, y=50)
    found = segment(scan(ink))
    assert len(found.marks) == 6 and not found.left_out
    for mark in found.marks:
        assert mark.box[3] < 70 and mark.box[2] < 45


def test_ones_against_a_rule_halfway_between_dividers_are_not_ticks() -> None:
    """1s written up against a comb's top rule, halfway between its dividers, hang from it as
    ticks would, and stand on a lattice of half the dividers' step; but a comb's ticks take
    most of the places its dividers leave empty, and these take four of six: they are read
    (they were taken out as print, and nothing was left out to tell)."""
    ink = np.zeros((170, 700), np.float32)
    cv2.rectangle(ink, (20, 25), (680, 135), 1.0, 5)
    for n, glyph in enumerate("171011"):
        if n:
            cv2.line(ink, (20 + 110 * n, 25), (20 + 110 * n, 135), 1.0, 5)
        draw(ink, glyph, 20 + 110 * n + (53 if glyph == "1" else 37), y=26 if glyph == "1" else 50)
    found = segment(scan(ink))
    assert len(found.marks) == 6 and not found.left_out


def test_a_one_written_over_a_tick_is_read() -> None:
    """A 1 standing on a comb's bottom rule right where a short tick rises is one upright stroke
    with it, on the ticks' lattice and with a free tip; but printed ticks are as long as each
    other, and this one is four times as long: it is read (it was taken out as a tick, and
    nothing was left out to tell)."""
    ink = np.zeros((170, 620), np.float32)
    cv2.line(ink, (20, 131), (600, 131), 1.0, 3)
    for n in range(7):
        cv2.line(ink, (20 + 96 * n, 131), (20 + 96 * n, 116), 1.0, 3)
    for n, glyph in enumerate("70107"):
        if glyph == "1":
            draw(ink, glyph, 20 + 96 * (n + 1) - 2, y=66)
        else:
            draw(ink, glyph, 20 + 96 * n + 30, y=62)
    found = segment(scan(ink))
    assert len(found.marks) == 5 and not found.left_out and not found.unread
    _, _, w, h = found.marks[2].box
    assert w < 12 and h > 40


@pytest.mark.parametrize("offset", [0, 2])
def test_a_stroke_along_a_divider_is_kept(offset: int) -> None:
    """A 1 written over a comb's divider: where the ink is broader than the divider alone, it
    is the writing's, and stays (not a sliver of the 1 beside the divider taken out)."""
    ink = np.zeros((170, 360), np.float32)
    cv2.rectangle(ink, (20, 25), (340, 135), 1.0, 2)
    for n, glyph in enumerate("7070"):
        if n:
            cv2.line(ink, (20 + 80 * n, 25), (20 + 80 * n, 135), 1.0, 2)
        draw(ink, glyph, 20 + 80 * n + 22, y=50)
    cv2.line(ink, (182 + offset, 50), (182 + offset, 110), 1.0, 5, cv2.LINE_AA)
    found = segment(scan(ink))
    assert len(found.marks) == 5 and not found.unread
    _, y, w, h = found.marks[2].box
    assert w >= 6 and abs(y - 50) <= 4 and abs(h - 60) <= 8


def test_the_bars_of_two_sevens_either_side_of_a_divider_are_no_rule() -> None:
    """Two 7s in neighbouring cells, one's bar touching the divider, the other's starting just
    past it: the bars and the divider run together into a line half the box long and twice
    the writing's height, along the writing's rows; inside a box, that is writing, and the 7s
    keep their bars."""
    ink = comb(3, "full", "")
    for bar, stem in (((34, 100), (60, 106)), ((106, 170), (136, 106))):
        cv2.polylines(ink, [np.int32([[bar[0], 60], [bar[1], 60], stem])], False, 1.0, 5)
    cv2.ellipse(ink, (220, 83), (14, 22), 0, 0, 360, 1.0, 5)
    found = segment(scan(ink))
    assert len(found.marks) == 3 and not found.left_out
    for mark in found.marks[:2]:
        _, y, w, _ = mark.box
        assert y <= 60 and w >= 40


def test_a_short_comb_whose_writing_touches_it_is_not_read() -> None:
    """Three narrow cells, each digit touching a divider: every mark is the box's height, so
    the writing seems as tall as the box, and its rules no longer than two such heights; they
    are still a box's top and bottom, one above the other."""
    ink = np.zeros((170, 230), np.float32)
    cv2.rectangle(ink, (20, 25), (200, 135), 1.0, 2)
    for x in (80, 140):
        cv2.line(ink, (x, 25), (x, 135), 1.0, 2)
    for x, glyph in ((44, "7"), (102, "0"), (164, "7")):
        draw(ink, glyph, x, y=50)
    found = segment(scan(ink))
    assert len(found.marks) == 3 and not found.left_out
    assert all(mark.box[3] < 70 for mark in found.marks)


def test_digits_touching_the_box_keep_none_of_it() -> None:
    """A 0 against the box's side and one resting on its bottom line lie whole beside the
    print: it is taken out whole, not kept as part of them (as where a stroke runs along the
    print and the print holds part of it), and the 7 between is no divider."""
    ink = np.zeros((180, 420), np.float32)
    cv2.rectangle(ink, (10, 10), (404, 150), 1.0, 3)
    for glyph, x, y in (("0", 11, 40), ("7", 120, 40), ("0", 220, 88), ("7", 320, 40)):
        draw(ink, glyph, x, y)
    found = segment(scan(ink))
    assert len(found.marks) == 4 and not found.left_out and not found.unread
    (x, *_), _, (_, y, _, h), _ = (mark.box for mark in found.marks)
    assert x >= 10 and y + h <= 149  # the side spans x 8.5-11.5; the 0's own ink starts at 10.5


def test_a_bar_written_on_a_box_line_is_kept() -> None:
    """A 7 whose bar lies on the box's top line, as broad as the line: the line holds as much
    ink there as the writing, twice its own elsewhere (ink over print is darker than either),
    so the bar is the writing's and the 7 keeps it (taken out, it reads as a 1)."""
    printed = np.zeros((170, 360), np.float32)
    cv2.rectangle(printed, (20, 40), (340, 140), 0.45, 3)
    writing = np.zeros_like(printed)
    for glyph, x in (("0", 60), ("0", 260)):
        draw(writing, glyph, x, y=60)
    cv2.polylines(writing, [np.int32([[150, 40], [190, 40], [166, 100]])], False, 1.0, 3)
    found = segment(scan(1 - (1 - printed) * (1 - writing)))
    assert len(found.marks) == 3 and not found.left_out
    _, y, w, _ = found.marks[1].box
    assert y <= 42 and w >= 36


def test_a_dashed_side_the_writing_runs_along_inside_is_found() -> None:
    """A stroke running along a dashed side just inside the box: the paper beside the side is
    inked inside, as beside a digit's broken stroke, but blank outside, as beside a side (it
    was kept, and read as a 1)."""
    clean = np.zeros((140, 300), np.uint8)
    for x in (20, 278):
        for y in range(25, 115, 14):
            cv2.line(clean, (x, y), (x, min(y + 7, 115)), 1, 3)
    cv2.line(clean, (27, 35), (27, 105), 1, 3)  # writing 5 px inside the left side
    sides = _sides(clean, np.zeros_like(clean), [27, 114], gap=2, thick=3)
    assert sides[30:110, 20].all() and sides[30:110, 278].all() and not sides[:, 26:29].any()


def test_a_one_standing_on_an_underline_is_not_a_tick() -> None:
    ink = field("7177")
    cv2.line(ink, (10, 101), (410, 101), 1.0, 2)  # the 1 stands on it: straight, and touching
    found = segment(scan(ink))
    assert len(found.marks) == 4


@pytest.mark.parametrize("scale", [1.0, 0.35])
@pytest.mark.parametrize(
    "style",
    ["dotted", "dashed", "long dashes", "long breaks", "longer breaks", "longer dashes"],
)
def test_dotted_and_dashed_boxes_are_not_read(style: str, scale: float) -> None:
    """Breaks as long as the dashes, or longer (a third of the writing's height: bridged twice
    as far when nothing is found at first), are bridged too: the dashes' one period, and
    their lengths, short beside a digit's strokes, tell them from writing; a box's top and
    bottom, two alike, may have dashes up to the writing's height. Small writing (21 px tall)
    is looked at larger first, where a pixel of blur or threshold is not a dot's worth."""
    ink = field("7070")
    period, length = {
        "dotted": (6, 2),
        "dashed": (14, 9),
        "long dashes": (22, 14),
        "long breaks": (20, 8),
        "longer breaks": (34, 14),  # breaks a third of the writing's height
        "longer dashes": (46, 36),  # over half the writing's height: print as a box's top
    }[style]
    for x in range(10, 400, period):
        for y in (25, 115):
            cv2.line(ink, (x, y), (min(x + length - 1, 400), y), 1.0, 2)
    for y in range(25, 115, period):
        for x in (10, 400):
            cv2.line(ink, (x, y), (x, min(y + length - 1, 115)), 1.0, 2)
    found = segment(scan(cv2.resize(ink, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)))
    assert len(found.marks) == 4 and not found.left_out and not found.unread
    for mark in found.marks:
        assert mark.box[3] < 70 * scale


def test_a_sparsely_dotted_underline_is_not_read() -> None:
    """Dots further apart than they are long, under the writing and nothing below them: an
    underline, however sparse."""
    ink = field("7070")
    for x in range(20, 300, 12):
        cv2.circle(ink, (x, 112), 2, 1.0, -1)
    found = segment(scan(ink))
    assert len(found.marks) == 4 and not found.left_out and not found.unread
    assert all(mark.box[1] + mark.box[3] < 108 for mark in found.marks)


@pytest.mark.parametrize(("glyphs", "period", "pen"), [("7171", 19, 4), ("1111", 20, 5)])
def test_a_dashed_box_around_thin_writing_is_not_read(glyphs: str, period: int, pen: int) -> None:
    """Thin-penned digits have less ink than the box's thick dashes; the writing's height is
    still taken as at least a share of the crop's, so the dashes' breaks are bridged. A 1
    standing 10 px above a thick line does not end on it: it is no tick."""
    ink = np.zeros((140, 420), np.float32)
    for n, glyph in enumerate(glyphs):
        draw(ink, glyph, 60 + 64 * n, thickness=2)
    for x in range(10, 400, period):
        for y in (25, 115):
            cv2.line(ink, (x, y), (min(x + 13, 400), y), 1.0, pen)
    for y in range(25, 115, period):
        for x in (10, 400):
            cv2.line(ink, (x, y), (x, min(y + 13, 115)), 1.0, pen)
    found = segment(scan(ink))
    assert len(found.marks) == 4 and not found.left_out


def test_a_one_close_to_both_box_lines_is_not_a_side() -> None:
    """A 1 standing alone with little paper above and below it bridges to the box's lines as
    a dashed side would; it is one long stroke, not dashes, so it is read."""
    ink = field("71070", gap=30)
    cv2.rectangle(ink, (10, 30), (400, 106), 1.0, 2)  # 10 px of paper above and below the 1
    found = segment(scan(ink))
    assert len(found.marks) == 5 and not found.left_out


def test_ones_in_a_slightly_turned_box_are_not_ticks() -> None:
    """A turned box's rules span more rows than their pen; 1s standing clear of them are
    writing: a tick ends on its rule's ink, not anywhere in the rows the rule spans."""
    ink = field("71010", gap=30)
    corners = np.int32([[8, 16], [404, 22], [404, 118], [8, 112]])  # turned by 0.9 degrees
    cv2.polylines(ink, [corners], True, 1.0, 2, cv2.LINE_AA)
    found = segment(scan(ink))
    assert len(found.marks) == 5 and not found.left_out


def turned_box(
    glyphs: str, degrees: float, thickness: int, line_type: int, light: float = 1.0
) -> np.ndarray:
    """The field of `glyphs` in a box turned by `degrees` about the field's middle, its lines
    inked `light` (the writing: 1)."""
    ink = field(glyphs, gap=30, size=(180, 420))
    turn = cv2.getRotationMatrix2D((207.0, 80.0), degrees, 1.0)
    corners = np.float32([[10, 10], [404, 10], [404, 150], [10, 150]])
    turned = corners @ turn[:, :2].T + turn[:, 2]
    cv2.polylines(ink, [np.int32(np.round(turned))], True, light, thickness, line_type)
    return ink


@pytest.mark.parametrize("degrees", [1.5, 2.0])
def test_the_leaning_sides_of_a_turned_box_are_not_read(degrees: float) -> None:
    """A box turned by a degree or two leans its sides across several columns, and the
    scanner's blur widens them: no part of a side is left to be read as a 1."""
    ink = turned_box("7017", degrees, 2, cv2.LINE_AA)
    found = segment(scan(cv2.GaussianBlur(ink, (0, 0), 1.5)))
    assert len(found.marks) == 4 and not found.left_out and not found.unread


@pytest.mark.parametrize("degrees", [1.5, 2.0])
def test_a_thin_box_turned_a_little_is_not_read(degrees: float) -> None:
    """A box drawn a pixel thin and turned by a degree or two is a staircase of short runs,
    none as long as a digit: it is print still, not one mark holding the whole field."""
    found = segment(scan(turned_box("7017", degrees, 1, cv2.LINE_8)))
    assert len(found.marks) == 4 and not found.left_out and not found.unread


@pytest.mark.parametrize(("light", "blur"), [(1.0, 1.0), (0.35, 0.0)])
def test_thin_light_sides_of_a_turned_box_are_not_read(light: float, blur: float) -> None:
    """A box drawn a pixel thin, lighter than the writing or blurred, and turned: its sides
    fade from the blurred ink the sides are sought in, and step from column to column. They
    are found from the rules' ends, as straight lines the ink holds nearly all the way."""
    ink = turned_box("7017", 1.5, 1, cv2.LINE_8, light)
    found = segment(scan(cv2.GaussianBlur(ink, (0, 0), blur) if blur else ink))
    assert len(found.marks) == 4 and not found.left_out and not found.unread


@pytest.mark.parametrize("degrees", [0.75, 1.0])
def test_thin_light_dividers_of_a_turned_comb_are_not_read(degrees: float) -> None:
    """A comb drawn a pixel thin and lighter than the writing (a drop-out comb's ghost in the
    plane read), turned under a degree: its dividers fade from the blurred ink as its sides
    do, and were read as 1s between the digits; its rules step a row every 70 px or so, and
    their ends, shorter than a digit, were lost with the sides there. The rules run on along
    their line; the dividers are found as the sides are, on the comb's lattice."""
    ink = 0.6 * comb(4, "full", "", thick=1)
    for n, glyph in enumerate("7070"):
        draw(ink, glyph, 20 + 80 * n + 22, y=50)
    turn = cv2.getRotationMatrix2D((180.0, 85.0), degrees, 1.0)
    ink = cv2.warpAffine(ink, turn, ink.shape[::-1])
    found = segment(scan(ink))
    assert len(found.marks) == 4 and not found.left_out and not found.unread


def test_the_light_sides_of_a_turned_box_around_one_digit_are_not_read() -> None:
    """A narrow box, light and turned under a degree: its sides, blurred, are broader than its
    rules' pen, and where they lean out of the columns held from rule to rule they were left
    as a 1 either side of the digit."""
    ink = field("7", size=(200, 160))
    turn = cv2.getRotationMatrix2D((80.0, 90.0), 0.8, 1.0)
    corners = np.float32([[40, 20], [120, 20], [120, 170], [40, 170]])
    turned = corners @ turn[:, :2].T + turn[:, 2]
    cv2.polylines(ink, [np.int32(np.round(turned))], True, 0.4, 2, cv2.LINE_AA)
    found = segment(scan(cv2.GaussianBlur(ink, (0, 0), 1.0)))
    assert len(found.marks) == 1 and not found.left_out and not found.unread


@pytest.mark.parametrize("degrees", [1.5, 2.5])
def test_a_tall_one_in_a_turned_comb_is_no_divider(degrees: float) -> None:
    """A 1 hanging from the top of a turned comb, four fifths of its height, clear of the
    bottom: the rows between the rules in every column are fewer than the 1 spans, but where
    it stands the bottom rule lies well below it. It is read, not taken out as a divider."""
    ink = np.zeros((180, 440), np.float32)
    for k, glyph in enumerate("07107"):
        middle = 60 + 80 * k
        if glyph == "1":
            cv2.line(ink, (middle, 31), (middle, 119), 1.0, 3, cv2.LINE_AA)
        else:
            draw(ink, glyph, middle - 18, y=55)
    lines = [[(20, 30), (420, 30)], [(20, 140), (420, 140)], [(20, 30), (20, 140)]]
    lines += [[(420, 30), (420, 140)], *([(x, 140), (x, 110)] for x in range(100, 420, 80))]
    turn = cv2.getRotationMatrix2D((220.0, 85.0), degrees, 1.0)
    for line in lines:
        ends = np.int32(np.round(np.float32(line) @ turn[:, :2].T + turn[:, 2]))
        cv2.line(ink, tuple(ends[0]), tuple(ends[1]), 1.0, 3, cv2.LINE_AA)
    found = segment(scan(cv2.GaussianBlur(ink, (0, 0), 1.0)))
    assert len(found.marks) == 5 and not found.left_out and not found.unread


@pytest.mark.parametrize("glyphs", ["010", "717"])
def test_a_one_standing_on_the_line_halfway_across_a_box_is_read(glyphs: str) -> None:
    """The middle of three digits, a 1 standing on the box's bottom line, is where the one
    tick of a comb of two cells would be; a tick alone between the sides reaches across half
    the box at most, the 1 across most of it. It is read, not taken out as a tick."""
    ink = np.zeros((160, 420), np.float32)
    for k, glyph in enumerate(glyphs):
        middle = round(20 + (k + 0.5) * 380 / 3)
        if glyph == "1":
            cv2.line(ink, (middle, 62), (middle, 120), 1.0, 3, cv2.LINE_AA)
        else:
            draw(ink, glyph, middle - 18, y=58, thickness=3)
    cv2.rectangle(ink, (20, 30), (400, 121), 1.0, 2)
    found = segment(scan(ink))
    assert len(found.marks) == 3 and not found.left_out


def test_ones_beside_a_box_side_are_no_comb() -> None:
    """Two 1s standing on a box's line, evenly spaced from its left side, are no comb's
    ticks, nor is one stroke between the sides: a comb's lattice runs through both sides and
    fills most of its places between them."""
    assert _lattice([42.0, 74.0], [10.0, 400.0], narrowest=30.0) == []
    # one stroke a third or half of the way: as many places taken as a comb missing a divider
    assert _lattice([140.0], [10.0, 400.0], narrowest=30.0) == []
    assert _lattice([90.0, 170.0, 250.0, 330.0], [10.0, 410.0], narrowest=30.0) == [0, 1, 2, 3]


def test_strokes_halfway_between_dividers_are_no_ticks() -> None:
    """A comb whose dividers all stand makes its own lattice; two strokes on the rule halfway
    between them (a 4's stem, a 1) fill a lattice of half the step no better: writing. Ticks
    between every two dividers do."""
    dividers = [20.0, 100.0, 180.0, 260.0, 340.0]
    assert _lattice([60.0, 220.0], dividers, narrowest=30.0) == []
    assert _lattice([60.0, 140.0, 220.0, 300.0], dividers, narrowest=30.0) == [0, 1, 2, 3]


def test_a_one_from_rule_to_rule_in_a_comb_cell_is_read() -> None:
    """A 1 written the whole height of its cell meets both rules as a divider does, but in
    the middle of the cell, off the lattice the comb's sides and dividers stand on."""
    ink = comb(5, "full", "")
    for cell, glyph in ((0, "7"), (1, "0"), (3, "0"), (4, "7")):
        draw(ink, glyph, 20 + 80 * cell + 22, y=50)
    cv2.line(ink, (20 + 80 * 2 + 40, 25), (20 + 80 * 2 + 40, 135), 1.0, 4, cv2.LINE_AA)
    found = segment(scan(ink))
    assert len(found.marks) == 5 and not found.left_out and not found.unread
    assert found.marks[2].box[3] >= 100  # the 1, whole


@pytest.mark.parametrize(
    "index", [88, 275], ids=["faint writing in a drop-out comb", "a small comb on grain"]
)
def test_fields_on_grainy_paper_keep_every_digit_and_no_grain(digits, index: int) -> None:
    """Fields of the independent generator (development seed 1003) whose paper's grain, denser
    along the crop's rim, once made rules there: the sides found between them cut a faint
    digit's stem out silently, or the grain along them was named as marks off the line."""
    _, data, text, _ = specimens.field(digits.x_test, digits.y_test, 1003, index)
    gray, colour, reduced = decode_colour(data)
    found = segment(writing(gray, colour), reduced)
    assert len(found.marks) == len(text) and not found.left_out and not found.unread


@pytest.mark.parametrize("index", [611, 902], ids=["a light 1 in a bold box", "a 2 in a bold comb"])
def test_a_light_digit_in_a_box_on_noisy_paper_is_found(digits, index: int) -> None:
    """Single digits of the independent generator (development seed 1015) lighter than their
    box: once the box is blanked out, the paper's level and grain were taken over the blank
    too, which put the threshold for ink above the digit ("no ink found")."""
    _, data, _, _ = specimens.field(digits.x_test, digits.y_test, 1015, index, (1, 1))
    gray, colour, reduced = decode_colour(data)
    found = segment(writing(gray, colour), reduced)
    assert len(found.marks) == 1 and not found.left_out


@pytest.mark.parametrize("index", [100, 379], ids=["an 8 in a grey box", "a 5 in a red box"])
def test_a_box_a_third_as_dark_as_the_writing_is_not_read(digits, index: int) -> None:
    """Single digits of the independent generator (development seed 1015) in a box barely
    coloured (read in the gray) or red (read where red vanishes, but for a trace): left at a
    third of the writing's darkness, under the level print is sought at, its side was read
    as a 1 (5 as 51 at 0.99)."""
    _, data, _, _ = specimens.field(digits.x_test, digits.y_test, 1015, index, (1, 1))
    gray, colour, reduced = decode_colour(data)
    found = segment(writing(gray, colour), reduced)
    assert len(found.marks) == 1 and not found.left_out


def test_the_blur_joining_close_digits_is_no_light_rule() -> None:
    """Digits written close on a blurred scan with no print: at a quarter of the writing's
    level their blur joins their tops into a line as long as a rule, which is the writing's
    own ink, not light print (7 digits read as 4, an 0876398 as 016576)."""
    ink = field("0707070", gap=10, size=(140, 520))
    found = segment(cv2.GaussianBlur(scan(ink), (0, 0), 3.0))
    assert len(found.marks) == 7


@pytest.mark.parametrize("index", [449, 497], ids=["a light 7", "a light 3"])
def test_a_light_digit_alone_on_grainy_paper_is_one_mark(digits, index: int) -> None:
    """Single digits of the independent generator (development seed 1015), light, with no
    print, on grainy paper: the paper's grain was taken for ink and read as a second digit."""
    _, data, _, _ = specimens.field(digits.x_test, digits.y_test, 1015, index, (1, 1))
    gray, colour, reduced = decode_colour(data)
    found = segment(writing(gray, colour), reduced)
    assert len(found.marks) == 1 and not found.left_out


@pytest.mark.parametrize(
    "index",
    [32, 76, 107, 176],
    ids=["an underline", "a comb's ticks", "dust on plain paper", "a box's sliver"],
)
def test_blank_fields_of_the_independent_generator_have_no_ink(
    digits, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    """Fields of the independent generator (development seed 1031) with nothing written:
    their print, paper and scanner alone were read as 2s, 1s and 8s. The ticks of a comb whose
    bottom line runs a little turned take in its rows where they stand on it."""
    monkeypatch.setattr(specimens, "CONTRAST", (0.0, 0.0))
    monkeypatch.setattr(specimens, "FAINT", (0.0, 0.0))
    _, data, _, _ = specimens.field(digits.x_test, digits.y_test, 1031, index, (1, 4))
    gray, colour, reduced = decode_colour(data)
    with pytest.raises(NoInkError):
        segment(writing(gray, colour), reduced)


@pytest.mark.parametrize(
    ("seed", "index", "lengths"),
    [(1015, 836, (1, 1)), (1017, 164, (2, 2))],
    ids=["a 0 in a light dashed box", "55 in a light comb"],
)
def test_light_print_on_noisy_paper_is_not_read(
    digits, seed: int, index: int, lengths: tuple[int, int]
) -> None:
    """Fields of the independent generator (development seeds) whose print is light and the
    scan noisy: the level print is sought at lay in the paper's grain, whose specks bridged
    the lines' breaks and hid them, and the box's sides were read as 1s (101, 1511)."""
    _, data, text, _ = specimens.field(digits.x_test, digits.y_test, seed, index, lengths)
    gray, colour, reduced = decode_colour(data)
    found = segment(writing(gray, colour), reduced)
    assert len(found.marks) == len(text) and not found.left_out


def test_a_crop_mostly_ink_keeps_its_digits(digits, tmp_path) -> None:
    """A field of the own generator (development seed 21) whose bold box and large digits
    cover much of the crop: the paper's grain is measured off the ink, or the print is sought
    above a level its lines do not reach, and the box is read (7426 as 633)."""
    labels = samples.write_fields(tmp_path, digits.x_test, digits.y_test, 50, seed=21)
    name = next(name for name in labels if name.startswith("field-00049"))
    gray, colour, reduced = decode_colour((tmp_path / name).read_bytes())
    found = segment(writing(gray, colour), reduced)
    assert len(found.marks) >= 3 and not found.left_out and not found.unread
