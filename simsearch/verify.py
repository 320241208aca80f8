"""Geometric verification of a candidate pair with local features: ORB keypoints, spread over the
image, matched with a ratio test, then an affine transform fitted by RANSAC (OpenCV). A copy (crop, rotation,
scale, tilt, aspect change, borders, overlays) keeps most of its points where the transform
puts them; another shot of the same scene does not. The mirror image is tried too, since ORB
descriptors are not mirror-invariant. Where a transform is fitted, small blurred copies of the two images
tell whether the pictures agree where it lays one on the other: a copy's do everywhere, those of two photos
stamped with one watermark only on the watermark.

The fitted transform is reported as what it means for the pair: scale, rotation, flip, and
the box of the first image that the second one shows (its crop)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from PIL import Image

from .errors import ImageError
from .imageio import DEFAULT_MAX_PIXELS, decode_file

WORK_SIDE = 512  # images are matched at this longer side
ORB_FEATURES = 1000
# keypoints are spread over a GRID x GRID grid of the work image: ORB keeps the strongest corners, and
# a text overlay or logo alone can hold most of them, leaving too few on the picture it covers
GRID = 4
CELL_CAP = 1.5  # a cell keeps at most this many times its even share of ORB_FEATURES
DETECTED = 4  # corners detected per keypoint kept, to choose from
RATIO = 0.8  # Lowe's ratio test
RANSAC_PIXELS = 0.012  # reprojection tolerance, a fraction of the work image's diagonal
MIN_MATCHES = 6
# agreement: the images are compared at THUMB times below the work size, blurred (sigma in thumbnail pixels) so a
# pixel's misfit does not count, in BLOCK x BLOCK blocks; blocks flat in either image (standard deviation under
# BLOCK_STD grey levels) say nothing, and fewer than MIN_BLOCKS textured blocks measure nothing (agreement 0)
THUMB = 4
THUMB_BLUR = 1.0
BLOCK = 8
BLOCK_STD = 3.0
MIN_BLOCKS = 4
OVERHANG_MARGIN = 0.02  # a block's centre this far (a share of the frame's side) past the other's frame lies beyond it
OVERHANG_MIN_BLOCKS = 8  # textured blocks an image needs for its overhang to be measured


@dataclass(frozen=True)
class Transform:
    """How the second image of a pair maps onto the first."""

    scale: float  # the second image's size against the first's (geometric mean of the two axes)
    aspect: float  # x scale over y scale (1: aspect kept)
    rotation: float  # degrees, counter-clockwise
    flipped: bool  # mirrored
    crop: tuple[float, float, float, float]  # the part of the first image the second shows, (x1, y1, x2, y2) in 0-1


@dataclass(frozen=True)
class Geometry:
    """A fitted map, with what it takes to describe it either way round: the affine map of b's work-image
    points onto a's (2x3, row by row), and both work images' sizes and scales."""

    matrix: tuple[float, ...]
    a_size: tuple[int, int]
    a_scale: float
    b_size: tuple[int, int]
    b_scale: float
    flipped: bool

    def transform(self, reverse: bool = False) -> Transform | None:
        """How b maps onto a; with ``reverse``, how a maps onto b (None where the map cannot be inverted)."""
        geometry = self.reversed() if reverse else self
        if geometry is None:
            return None
        matrix = np.array(geometry.matrix, dtype=np.float64).reshape(2, 3)
        return _describe(matrix, geometry.a_size, geometry.a_scale, geometry.b_size, geometry.b_scale, geometry.flipped)

    def reversed(self) -> Geometry | None:
        """The same fit the other way round (a's points onto b's); None where the map cannot be inverted."""
        matrix = np.array(self.matrix, dtype=np.float64).reshape(2, 3)
        if abs(np.linalg.det(matrix[:, :2])) < 1e-12:
            return None
        inverse = np.linalg.inv(matrix[:, :2])
        matrix = np.hstack([inverse, -inverse @ matrix[:, 2:]])
        return Geometry(tuple(float(v) for v in matrix.ravel()), self.b_size, self.b_scale, self.a_size, self.a_scale,
                        self.flipped)


@dataclass(frozen=True)
class Verification:
    matches: int  # ratio-test matches
    inliers: int  # matches the transform explains
    keypoints: int  # the fewer keypoints of the two images
    geometry: Geometry | None
    # the inliers' median distance from where the transform puts them, over their keypoints' size (``_fit``).
    # Measured so, other shots of one scene stood apart from edited copies better than over the image's diagonal,
    # blurred copies most (generated collection seed 6, verified pairs with 13 or more inliers: area under the ROC
    # curve 0.93 against 0.86 for copies, 0.89 against 0.71 for blurred ones)
    residual: float = 1.0
    # how far the inliers spread over what the images show: the area of their convex hull over that of all the
    # image's keypoints, in the image where it is larger (an image with few keypoints, all of them in a part of
    # the other, limits the other's). A copy's inliers cover the picture the two share; two photos stamped with
    # one watermark match on the watermark alone (0.07 at the median, where 95 % of the verified pairs of edited
    # copies and their bases were above 0.57)
    spread: float = 0.0
    # how alike the two pictures are where the transform lays one on the other: the median correlation of their
    # grey levels over small textured blocks (-1 to 1; 0 where nothing could be compared). On the calibration
    # data's validation split, 99 % of the verified pairs of an edited copy and its base were above 0.85; two
    # photos of different bases stamped with one mark were at 0.02 (fit split) and 0.29 (validation) at the
    # median, and other shots of one scene anywhere from 0 to 1
    agreement: float = 0.0
    # how much of each picture lies beyond the other's frame where the transform lays them together: the share of an
    # image's textured blocks (``agreement``'s) that land outside the other image, the smaller of the two. A copy lies
    # within its original (a crop), or its original within it (a frame, padding, filled corners: flat), so one of the
    # two is about 0; two overlapping shots of one scene (a camera turned, a panorama's frames) each show what the
    # other does not. Counted in keypoints instead, a shot whose own part is a bare wall showed none beyond
    overhang: float = 0.0

    @property
    def inlier_fraction(self) -> float:
        return self.inliers / self.keypoints if self.keypoints else 0.0

    @property
    def inlier_share(self) -> float:
        """The share of the matches the transform explains: a copy keeps nearly all of them where the transform
        puts them; another shot's moving parts match but do not fit."""
        return self.inliers / max(self.matches, 1)

    @property
    def transform(self) -> Transform | None:
        """How the second image maps onto the first."""
        return self.geometry.transform() if self.geometry is not None else None

    def reversed(self) -> Verification:
        """The verification told the other way round: the same counts, the fit mapping the first image onto the
        second."""
        geometry = self.geometry.reversed() if self.geometry is not None else None
        return Verification(self.matches, self.inliers, self.keypoints, geometry, self.residual, self.spread,
                            self.agreement, self.overhang)


@dataclass
class Keypoints:
    size: tuple[int, int]  # of the work image
    scale: float  # work image pixels per pixel of the stored image
    points: np.ndarray  # (n, 2) float32
    sizes: np.ndarray  # (n,) float32: each keypoint's diameter, in work image pixels (larger on coarser scales)
    descriptors: np.ndarray | None  # (n, 32) uint8
    mirrored_points: np.ndarray | None  # None: the mirror image was not looked at (see ``keypoints``)
    mirrored_sizes: np.ndarray | None  # its own: ``orb.compute`` drops keypoints it cannot describe
    mirrored_descriptors: np.ndarray | None
    thumbnail: np.ndarray | None = None  # (h, w) uint8: the work image THUMB times smaller, blurred

    @cached_property
    def hull_area(self) -> float:
        """The area of the keypoints' convex hull (the mirror image's is the same)."""
        return _hull_area(self.points)

    @cached_property
    def textured_blocks(self) -> np.ndarray:
        """``_textured_blocks`` of this image, measured once for all its pairs."""
        return _textured_blocks(self)


def keypoints(path: str, *, full_decode: bool = False, mirrored: bool = True,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> Keypoints | None:
    """ORB keypoints of the image at ``path`` and, with ``mirrored``, of its mirror image (needed only
    where the image is the second of a pair: ``verify`` turns ``b``, never ``a``); None if it cannot
    be read (gone, unreadable, or no longer an image: the caller decides what that means). An image
    OpenCV refuses (a 1-pixel-high banner is too thin for ORB's image pyramid) has no keypoints, and
    the run goes on."""
    try:
        decoded = decode_file(path, full=full_decode, grey=True, max_pixels=max_pixels)
    except ImageError:
        return None
    return image_keypoints(decoded.image, decoded.width, mirrored=mirrored)


def image_keypoints(grey: Image.Image, stored_width: int, *, mirrored: bool = True) -> Keypoints:
    """``keypoints`` of a decoded grey image whose stored image is ``stored_width`` pixels wide (a query
    image that is no file)."""
    scale = WORK_SIDE / max(grey.size)  # small images are enlarged: ORB needs room around each point
    grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                       Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC)
    try:
        return _orb(np.asarray(grey), stored_width, mirrored)
    except Exception:  # noqa: BLE001 - OpenCV raises its own errors on images it cannot take: one image fails
        none, no_sizes = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
        return Keypoints(grey.size, grey.width / stored_width, none, no_sizes, None, none if mirrored else None,
                         no_sizes if mirrored else None, None)


def _orb(pixels: np.ndarray, stored_width: int, mirrored: bool) -> Keypoints:
    import cv2  # noqa: PLC0415 - OpenCV loads only for borderline pairs

    orb = cv2.ORB_create(nfeatures=ORB_FEATURES * DETECTED)
    kept = spread(orb.detect(pixels, None), pixels.shape[1], pixels.shape[0])
    kept, desc = orb.compute(pixels, kept)
    points, sizes = _points(kept), _sizes(kept)
    size, scale = (pixels.shape[1], pixels.shape[0]), pixels.shape[1] / stored_width
    small = _thumbnail(pixels)
    if not mirrored:
        return Keypoints(size, scale, points, sizes, desc, None, None, None, small)
    mirrored_kept, mdesc = orb.compute(np.ascontiguousarray(pixels[:, ::-1]), _mirror(kept, pixels.shape[1]))
    mirrored_points = _points(mirrored_kept)
    mirrored_points[:, 0] = pixels.shape[1] - 1 - mirrored_points[:, 0]
    return Keypoints(size, scale, points, sizes, desc, mirrored_points, _sizes(mirrored_kept), mdesc, small)


def _thumbnail(pixels: np.ndarray) -> np.ndarray:
    import cv2  # noqa: PLC0415

    size = (max(1, round(pixels.shape[1] / THUMB)), max(1, round(pixels.shape[0] / THUMB)))
    small = cv2.GaussianBlur(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA).astype(np.float32), (0, 0),
                             THUMB_BLUR)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def _points(kept) -> np.ndarray:
    """OpenCV keypoints' positions, (n, 2) float32."""
    import cv2  # noqa: PLC0415

    return cv2.KeyPoint_convert(kept).reshape(-1, 2) if kept else np.zeros((0, 2), np.float32)


def _sizes(kept) -> np.ndarray:
    """OpenCV keypoints' diameters, (n,) float32."""
    return np.array([k.size for k in kept], dtype=np.float32)


def _mirror(kept, width: int) -> list:
    """The keypoints where the mirror image has them: corners and their orientation are mirror-symmetric,
    so the mirror image's descriptors are computed there without detecting again: 2.7 ms a photo against
    5.3 ms, and the models fitted on re-detected keypoints scored the calibration pairs alike (pair F1 within
    0.002)."""
    import cv2  # noqa: PLC0415

    return [cv2.KeyPoint(width - 1 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave,
                         k.class_id) for k in kept]


def spread(found: tuple, width: int, height: int) -> list:
    """The strongest of ``found`` (OpenCV keypoints), at most ORB_FEATURES, none of the GRID x GRID cells
    keeping more than CELL_CAP times its even share."""
    import cv2  # noqa: PLC0415

    if not found:
        return []
    xy = cv2.KeyPoint_convert(found).reshape(-1, 2)
    cell = (np.minimum(GRID - 1, (xy[:, 0] * GRID / width).astype(np.int64)) * GRID
            + np.minimum(GRID - 1, (xy[:, 1] * GRID / height).astype(np.int64)))
    order = np.argsort(-np.array([k.response for k in found], dtype=np.float32), kind="stable")
    ordered_cells = cell[order]
    by_cell = np.argsort(ordered_cells, kind="stable")  # positions in ``order``, grouped by cell, strongest first
    grouped = ordered_cells[by_cell]
    first = np.searchsorted(grouped, grouped, side="left")  # where each keypoint's cell starts
    rank = np.empty(len(order), dtype=np.int64)
    rank[by_cell] = np.arange(len(order)) - first  # each keypoint's rank by strength within its cell
    kept = order[rank < CELL_CAP * ORB_FEATURES / GRID**2][:ORB_FEATURES]
    return [found[i] for i in kept.tolist()]


def verify(a: Keypoints | None, b: Keypoints | None) -> Verification:
    """The best of matching ``b`` and ``b``'s mirror image against ``a``."""
    return verify_many(a, [b])[0]


def verify_many(a: Keypoints | None, others: list[Keypoints | None]) -> list[Verification]:
    """``verify(a, b)`` for each ``b`` of ``others``, with one descriptor search for all of them."""
    if a is None or a.descriptors is None:
        return [Verification(0, 0, 0, None) for _ in others]
    if any(b is not None and b.mirrored_points is None for b in others):
        raise ValueError("the second image of a pair needs its mirror image's keypoints: keypoints(..., mirrored=True)")
    # each b twice, as it is and mirrored
    sides = [side for b in others if b is not None
             for side in ((b.points, b.sizes, b.descriptors, False),
                          (b.mirrored_points, b.mirrored_sizes, b.mirrored_descriptors, True))]
    matchable = [d is not None and len(p) >= 2 and len(a.points) >= 2 for p, _, d, _ in sides]
    matches = iter(_ratio_matches([d for (_, _, d, _), ok in zip(sides, matchable) if ok], a.descriptors))
    fits = [_fit(a, p, sizes, next(matches), flipped) if ok else _Fit(0, 0, None, flipped, 1.0, None)
            for (p, sizes, _, flipped), ok in zip(sides, matchable)]
    found, k = [], 0
    for b in others:
        if b is None:
            found.append(Verification(0, 0, 0, None))
            continue
        best = max(fits[k], fits[k + 1], key=lambda fit: fit.inliers)  # straight wins a tie
        k += 2
        geometry = None
        if best.matrix is not None:
            geometry = Geometry(tuple(float(v) for v in best.matrix.ravel()), a.size, a.scale, b.size, b.scale,
                                best.flipped)
        found.append(Verification(best.matches, best.inliers, min(len(a.points), len(b.points)), geometry,
                                  best.residual, _spread(best.points, a, b), _agreement(best.matrix, a, b),
                                  _overhang(best, a, b)))
    return found


def orient(left: list[int], right: list[int],
           keys: Mapping[int, str] | Sequence[str]) -> tuple[list[int], list[int], list[bool]]:
    """The pairs ``(left[k], right[k])`` in the order they are verified, and which were turned round: the image
    whose key (its file's SHA-256) sorts first is the first. Matching is not symmetric, so a pair's verification
    then depends on its two files alone, not on which was indexed first."""
    turned = [keys[a] > keys[b] for a, b in zip(left, right)]
    first = [b if t else a for a, b, t in zip(left, right, turned)]
    second = [a if t else b for a, b, t in zip(left, right, turned)]
    return first, second, turned


def as_asked(checks: list[Verification | None], turned: list[bool]) -> list[Verification | None]:
    """Verifications of pairs put in order by ``orient``, told in the order they were asked (None stays None)."""
    return [check.reversed() if turn and check is not None else check for check, turn in zip(checks, turned)]


def verify_pairs(points: Mapping[int, Keypoints | None], left: list[int], right: list[int],
                 map_fn: Callable = map, done: Callable[[int], object] | None = None) -> list[Verification]:
    """``verify(points[a], points[b])`` for each pair ``(a, b)`` of ``left`` and ``right``, with one
    descriptor search per left image (``verify_many``); ``map_fn`` spreads the left images (a thread
    pool's ``map``: RANSAC releases the GIL); ``done`` is told how many pairs each left image verified,
    as they finish. Each search runs on one FAISS thread: OpenMP threads on top of the pool's only wait
    on each other. OpenMP's thread count belongs to each thread, so it is set in the thread that searches
    (601 photos, 4,035 pairs on 2 cores: 11.3 to 12.3 s set in the calling thread alone, 8.2 to 8.4 s)."""
    import faiss  # noqa: PLC0415

    by_left: dict[int, list[int]] = {}
    for k, a in enumerate(left):
        by_left.setdefault(a, []).append(k)
    found: list[Verification | None] = [None] * len(left)

    def one_left(a: int) -> list[Verification]:
        faiss.omp_set_num_threads(1)
        return verify_many(points[a], [points[right[k]] for k in by_left[a]])

    threads = faiss.omp_get_max_threads()
    try:
        batches = map_fn(one_left, by_left)
        for a, verifications in zip(by_left, batches):
            for k, check in zip(by_left[a], verifications):
                found[k] = check
            if done is not None:
                done(len(verifications))
    finally:
        faiss.omp_set_num_threads(threads)
    return found


class _Fit(NamedTuple):
    matches: int
    inliers: int
    matrix: np.ndarray | None  # the affine map of b's points onto a's
    flipped: bool
    residual: float
    points: tuple[np.ndarray, np.ndarray] | None  # the inliers, in a's work image and in b's


def _fit(a: Keypoints, points: np.ndarray, sizes: np.ndarray, matched: tuple[np.ndarray, np.ndarray],
         flipped: bool) -> _Fit:
    """A RANSAC affine fit mapping the matched ``points`` of b (keypoints of diameter ``sizes``) onto a."""
    import cv2  # noqa: PLC0415

    query, train = matched
    if len(query) < MIN_MATCHES:
        return _Fit(len(query), 0, None, flipped, 1.0, None)
    src, dst = points[query], a.points[train]
    tolerance = RANSAC_PIXELS * math.hypot(*a.size)
    matrix, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=tolerance,
                                           maxIters=2000, confidence=0.995)
    if matrix is None:
        return _Fit(len(query), 0, None, flipped, 1.0, None)
    keep = inliers.ravel().astype(bool)
    moved = src[keep] @ matrix[:, :2].T + matrix[:, 2]
    # each inlier's misfit against its keypoints' size (their geometric mean, b's taken onto a by the transform):
    # a keypoint found on a coarse scale (a blurred image has only those) is placed less exactly, while another
    # shot's parallax misplaces fine and coarse ones alike
    scaling = math.sqrt(max(abs(float(np.linalg.det(matrix[:, :2]))), 1e-12))
    size = np.sqrt(a.sizes[train][keep] * sizes[query][keep] * scaling)
    residual = float(np.median(np.hypot(*(moved - dst[keep]).T) / size))
    return _Fit(len(query), int(keep.sum()), matrix, flipped, residual, (dst[keep], src[keep]))


def _spread(inliers: tuple[np.ndarray, np.ndarray] | None, a: Keypoints, b: Keypoints) -> float:
    """``Verification.spread`` of a fit's inliers (in a's and in b's work image); measured for the chosen fit only."""
    if inliers is None:
        return 0.0
    in_a, in_b = inliers
    return min(1.0, max(_hull_area(in_a) / max(a.hull_area, 1.0), _hull_area(in_b) / max(b.hull_area, 1.0)))


def _overhang(fit: _Fit, a: Keypoints, b: Keypoints) -> float:
    """``Verification.overhang`` of a fit mapping b's work image onto a's, counted in textured blocks of the
    thumbnails (0 where there is none, or either image has too few such blocks to tell)."""
    if fit.matrix is None or a.thumbnail is None or b.thumbnail is None:
        return 0.0
    linear, shift = fit.matrix[:, :2], fit.matrix[:, 2]
    if abs(np.linalg.det(linear)) < 1e-9:
        return 0.0
    a_blocks, b_blocks = a.textured_blocks, b.textured_blocks
    if len(a_blocks) < OVERHANG_MIN_BLOCKS or len(b_blocks) < OVERHANG_MIN_BLOCKS:
        return 0.0
    b_beyond = _beyond(b_blocks @ linear.T + shift, a.size)
    a_beyond = _beyond((a_blocks - shift) @ np.linalg.inv(linear).T, b.size)
    return float(min(b_beyond, a_beyond))


def _textured_blocks(k: Keypoints) -> np.ndarray:
    """The centres, in work image pixels, of the thumbnail's textured BLOCK x BLOCK blocks (``_block_correlation``'s
    measure): frames, padding and filled corners are flat. Needs the thumbnail."""
    x = k.thumbnail.astype(np.float32)
    means = _block_means(x, x * x)
    if means is None:
        return np.zeros((0, 2))
    mean, square = means
    rows, cols = np.nonzero(square - mean * mean > BLOCK_STD**2)
    to_work = np.array([k.size[0] / k.thumbnail.shape[1], k.size[1] / k.thumbnail.shape[0]])
    return np.column_stack([(cols + 0.5) * BLOCK, (rows + 0.5) * BLOCK]) * to_work


def _beyond(points: np.ndarray, size: tuple[int, int]) -> float:
    """The share of ``points`` farther than OVERHANG_MARGIN of the frame's side outside a frame of ``size``."""
    margin = OVERHANG_MARGIN * np.asarray(size, dtype=np.float64)
    outside = (points < -margin) | (points > np.asarray(size) + margin)
    return float(outside.any(axis=1).mean())


def _agreement(matrix: np.ndarray | None, a: Keypoints, b: Keypoints) -> float:
    """``Verification.agreement`` of a fit mapping b's work image onto a's. It is measured in the frame of the
    image the other one is shrunk into (a crop's base shows little of itself where the crop lands)."""
    import cv2  # noqa: PLC0415

    if matrix is None or a.thumbnail is None or b.thumbnail is None:
        return 0.0
    onto, moved = a.thumbnail, b.thumbnail
    # work pixels to thumbnail pixels, each axis of each image (the rounding of the thumbnails' sizes)
    to_a = np.diag([onto.shape[1] / a.size[0], onto.shape[0] / a.size[1]])
    from_b = np.diag([b.size[0] / moved.shape[1], b.size[1] / moved.shape[0]])
    linear, shift = to_a @ matrix[:, :2] @ from_b, to_a @ matrix[:, 2:]
    if abs(np.linalg.det(linear)) < 1e-9:
        return 0.0
    if abs(np.linalg.det(linear)) < 1.0:
        inverse = np.linalg.inv(linear)
        linear, shift, onto, moved = inverse, -inverse @ shift, moved, onto
    # what falls outside the moved image is NaN, and so is every block it touches
    laid = cv2.warpAffine(moved.astype(np.float32), np.hstack([linear, shift]), (onto.shape[1], onto.shape[0]),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
    return _block_correlation(onto.astype(np.float32), laid)


def _block_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """The median correlation of ``x`` and ``y`` over their BLOCK x BLOCK blocks where ``y`` has no NaN and both
    are textured; 0 where fewer than MIN_BLOCKS are."""
    means = _block_means(x, y, x * x, y * y, x * y)
    if means is None:
        return 0.0
    mx, my, mxx, myy, mxy = means
    var_x, var_y = mxx - mx * mx, myy - my * my
    with np.errstate(invalid="ignore"):
        textured = (var_x > BLOCK_STD**2) & (var_y > BLOCK_STD**2)  # False where NaN
    if textured.sum() < MIN_BLOCKS:
        return 0.0
    correlation = (mxy - mx * my)[textured] / np.sqrt(var_x[textured] * var_y[textured])
    return float(np.median(correlation))


def _block_means(*planes: np.ndarray) -> list[np.ndarray] | None:
    """Each of ``planes`` (of one size) averaged over its whole BLOCK x BLOCK blocks by OpenCV's area resize; None
    where there is no whole block."""
    import cv2  # noqa: PLC0415

    h, w = planes[0].shape[0] - planes[0].shape[0] % BLOCK, planes[0].shape[1] - planes[0].shape[1] % BLOCK
    if not h or not w:
        return None
    return [cv2.resize(p[:h, :w], (w // BLOCK, h // BLOCK), interpolation=cv2.INTER_AREA) for p in planes]


def _hull_area(points: np.ndarray) -> float:
    """The area of the convex hull of ``points`` ((n, 2), in pixels; 0 for fewer than three)."""
    import cv2  # noqa: PLC0415

    if len(points) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(np.ascontiguousarray(points, dtype=np.float32))))


def _ratio_matches(queries: list[np.ndarray], train: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each query descriptor set, the indices of its points and of the train points they match:
    each query point's nearest train point by Hamming distance where it passes the ratio test
    against the second nearest, then one match per train point (the closest; the first query point
    on a tie), ordered by the first query point that reached each train point. That is what
    OpenCV's matcher followed by a dict gave, match for match and in the same order (RANSAC's
    samples depend on it), from one brute-force FAISS binary search for all the sets: it returns
    arrays, and is several times faster."""
    import faiss  # noqa: PLC0415

    if not queries:
        return []
    index = faiss.IndexBinaryFlat(train.shape[1] * 8)
    index.add(train)
    dist, nearest = index.search(np.concatenate(queries), 2)
    bounds = np.cumsum([0] + [len(q) for q in queries])
    return [_first_per_train(dist[s:e], nearest[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]


def _first_per_train(dist: np.ndarray, nearest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    passed = np.flatnonzero((nearest[:, 1] >= 0) & (dist[:, 0] < RATIO * dist[:, 1]))
    if not len(passed):
        return passed, passed
    to, closeness = nearest[passed, 0], dist[passed, 0]
    best = np.lexsort((passed, closeness, to))  # by train point, then distance, then query point
    starts = np.flatnonzero(np.r_[True, to[best][1:] != to[best][:-1]])
    first_hit = np.minimum.reduceat(passed[best], starts)
    keep = best[starts][np.argsort(first_hit, kind="stable")]
    return passed[keep], to[keep]


def _describe(matrix: np.ndarray, a_size: tuple[int, int], a_scale: float, b_size: tuple[int, int], b_scale: float,
              flipped: bool) -> Transform:
    linear = matrix[:, :2]
    sx, sy = np.hypot(linear[0, 0], linear[1, 0]), np.hypot(linear[0, 1], linear[1, 1])
    rotation = math.degrees(math.atan2(linear[1, 0], linear[0, 0]))
    w, h = b_size
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64)
    mapped = corners @ linear.T + matrix[:, 2]
    x1, y1 = np.clip(mapped.min(axis=0) / a_size, 0, 1)
    x2, y2 = np.clip(mapped.max(axis=0) / a_size, 0, 1)
    # b's stored pixels per pixel of a's stored image, over the part of a that b shows
    scale = a_scale / (b_scale * math.sqrt(max(sx * sy, 1e-12)))
    return Transform(round(float(scale), 3), round(float(sx / max(sy, 1e-12)), 3), round(-rotation, 1), flipped,
                     tuple(round(float(v), 3) for v in (x1, y1, x2, y2)))
