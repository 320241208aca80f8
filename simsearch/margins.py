"""Uniform margins: a frame, letterbox or pillarbox padding around a picture.

A copy with a border added holds no more of the picture than its original, though it has more pixels, so the
keeper of a duplicate group (``duplicates.keeper_order``) counts the picture's pixels without such margins. A
margin is a band of flat lines of one colour at both of two opposite edges (top and bottom, or left and right),
the two of the same colour, each ending at a straight edge of the picture. One flat edge alone (a sky, a wall)
and an object on a plain background (no straight edge) are taken as the picture. So are the filled corners
of a picture turned by a few degrees on a wider canvas."""

from __future__ import annotations

import numpy as np
from PIL import Image

FLAT = 6  # grey levels a margin line may span (JPEG keeps a flat area within a few levels)
EDGE_LINES = 2  # lines past a band in which the picture's straight edge must show (compression blurs it)
EDGE_SHARE = 0.6  # of such a line that must differ from the band: a straight edge, not an object's top
FILL_CLEARANCE = 3  # lines beyond a turned picture's side from which the fill must be all there is
TOUCH_SPAN = 0.3  # of an edge a turned picture may touch (a small turn lays its side along the edge)
MIN_PICTURE = 0.1  # margins leaving less than this share of a side are not margins (a blank image)


def picture_size(width: int, height: int, work: Image.Image) -> tuple[int, int]:
    """The picture's width and height in the stored image's pixels (``width`` x ``height``), without uniform
    margins or the filled corners of a turned picture, measured on its small grey work image
    (``hashing.work_image``): to a line of that image, which may leave a line of blended fill in the picture."""
    grey = np.asarray(work)
    sx, sy = width / work.width, height / work.height
    top, bottom, left, right = margins(grey)
    if top or left:
        return width - round((left + right) * sx), height - round((top + bottom) * sy)
    sides = turned(grey)
    if sides is None:
        return width, height
    return round(sides[0] * sx), round(sides[1] * sy)


def turned(grey: np.ndarray) -> tuple[float, float] | None:
    """The sides (the more horizontal first) of a picture turned on a canvas of one colour, its corners filled
    (a tilt that widened the image), from where it touches each edge; None where the image is not one."""
    h, w = grey.shape
    corners = grey[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int16)
    colour = float(np.median(corners))
    if np.abs(corners - colour).max() > FLAT:
        return None
    touches = []
    for line in (grey[0], grey[:, -1], grey[-1], grey[:, 0]):  # top, right, bottom, left
        off = np.flatnonzero(np.abs(line.astype(np.int16) - colour) > FLAT)
        if not len(off) or off[-1] - off[0] > TOUCH_SPAN * len(line):
            return None
        # a turned corner touches the edge at the span's end nearer the canvas' corner: the span runs from it
        # along the side that meets the edge at a shallow angle
        touches.append(float(off[0] if off[0] + off[-1] < len(line) - 1 else off[-1]))
    top, right, bottom, left = ((touches[0], 0), (w - 1, touches[1]), (touches[2], h - 1), (0, touches[3]))
    if not _filled_outside(grey, colour, (top, right, bottom, left)):
        return None
    a, b = np.hypot(*np.subtract(top, left)), np.hypot(*np.subtract(top, right))
    c, d = np.hypot(*np.subtract(bottom, right)), np.hypot(*np.subtract(bottom, left))
    if abs(a - c) > 0.1 * max(a, c) or abs(b - d) > 0.1 * max(b, d):
        return None  # not a rectangle
    return ((b + d) / 2, (a + c) / 2) if abs(top[0] - left[0]) < abs(top[0] - right[0]) else ((a + c) / 2, (b + d) / 2)


def _filled_outside(grey: np.ndarray, colour: float, touches: tuple) -> bool:
    """Whether the image is of the fill colour beyond each straight side between two touches (past a few lines
    of blending, and of error in where the picture touches the edge): a round picture bulges past them."""
    h, w = grey.shape
    ys, xs = np.mgrid[0:h, 0:w]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    beyond = np.zeros(grey.shape, dtype=bool)
    for p, q in zip(touches, touches[1:] + touches[:1]):
        normal = np.array([q[1] - p[1], p[0] - q[0]], dtype=np.float64)
        normal /= max(np.hypot(*normal), 1e-9)
        if np.dot(normal, centre - np.asarray(p)) > 0:
            normal = -normal  # pointing out, away from the picture
        beyond |= (xs - p[0]) * normal[0] + (ys - p[1]) * normal[1] > FILL_CLEARANCE
    if not beyond.any():
        return False
    return float((np.abs(grey[beyond].astype(np.int16) - colour) > FLAT).mean()) <= 0.05


def margins(grey: np.ndarray) -> tuple[int, int, int, int]:
    """Lines of uniform margin at the (top, bottom, left, right) of a grey image: nonzero only in pairs."""
    top, bottom = _pair(grey)
    left, right = _pair(grey.T)
    return top, bottom, left, right


def _pair(lines: np.ndarray) -> tuple[int, int]:
    """The flat bands at the first and last of ``lines`` (rows), where both have one and of the same colour."""
    half = len(lines) // 2
    first, first_colour = _band(lines[:half])
    last, last_colour = _band(lines[::-1][:half])
    if not (first and last) or abs(first_colour - last_colour) > FLAT:
        return 0, 0
    if not (_edge(lines, first, first_colour) and _edge(lines[::-1], last, last_colour)):
        return 0, 0
    if len(lines) - first - last < MIN_PICTURE * len(lines):
        return 0, 0
    return first, last


def _edge(lines: np.ndarray, band: int, colour: float) -> bool:
    """Whether the picture starts along a straight edge past the band: one of the few lines after it differs
    from the band's colour over most of its length (an object on a plain background does not)."""
    after = lines[band : band + EDGE_LINES].astype(np.int16)
    return bool(len(after)) and float((np.abs(after - colour) > FLAT).mean(axis=1).max()) >= EDGE_SHARE


def _band(lines: np.ndarray) -> tuple[int, float]:
    """How many of ``lines`` (rows, outermost first) are flat and of the first line's colour, and that colour."""
    if not len(lines):
        return 0, 0.0
    low, high = lines.min(axis=1).astype(np.int16), lines.max(axis=1).astype(np.int16)
    colour = (int(low[0]) + int(high[0])) / 2
    flat = (high - low <= FLAT) & (np.abs(low - colour) <= FLAT) & (np.abs(high - colour) <= FLAT)
    return (len(flat) if flat.all() else int(np.argmin(flat))), colour
