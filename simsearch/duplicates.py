"""Duplicate groups and the image each group keeps.

``auto`` (the default) decides every candidate pair with the calibrated models of
``simsearch.decide`` at a level (``copy`` or ``scene``) and groups without chaining. The other
methods are single-feature rules (equal bytes or pixels, one hash within a distance, cosine
above a similarity), grouped as connected components, kept for comparison and special uses."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from . import candidates
from .decide import (
    ENOUGH_AGREEING,
    Decider,
    Decisions,
    check_level,
    star_groups,
    transform_dict,
)
from .errors import InvalidArgument, SimsearchWarning
from .hamming import connected_groups, hamming_edges
from .names import DUPLICATE_METHODS
from .pairs import (
    FEATURES,
    Collection,
    load_collection,
    pair_features,
    row_density,
)
from .queries import check_distance, check_similarity
from .reads import ImageRecord, Reads
from .schema import HASH_METHODS, OK, Image
from .verified import VerifiedPairs

# the single-feature rules' defaults (chosen on the development set; see README)
DEFAULT_MAX_DISTANCE = {"phash": 2, "dhash": 1, "whash": 0, "ahash": 0}
DEFAULT_MIN_SIMILARITY = 0.98  # cosine, embeddings alone


@dataclass(frozen=True)
class Pair:
    """A decided pair: its probability at the level, the inputs it was decided on, and the transform
    mapping ``b`` onto ``a`` where geometric verification ran."""

    a: ImageRecord
    b: ImageRecord
    level: str
    score: float
    cheap_score: float
    duplicate: bool
    verified: bool
    exact: bool
    inputs: dict
    transform: dict | None = None
    gated: bool = False  # the level's gate set the probability: too few matches fit one transform, or they are bunched

    @property
    def decided_by(self) -> str:
        if self.exact:
            return "equal bytes or decoded pixels"
        if self.gated:
            return ("gate: the images showed enough keypoints, too few of whose matches fit one transform, or the "
                    "matches that fit are bunched in a small part of the images (a shared watermark)")
        return "verified model (geometry)" if self.verified else "cheap model (no image decoded)"

    def as_dict(self) -> dict:
        return {"a": self.a.path, "b": self.b.path, "level": self.level, "score": round(self.score, 4),
                "duplicate": self.duplicate, "decided_by": self.decided_by, "exact": self.exact,
                "verified": self.verified, "score_without_verification": round(self.cheap_score, 4),
                "inputs": self.inputs, "transform": self.transform}


@dataclass
class Decided:
    """A collection's candidate pairs decided at one level, with what is needed to group them."""

    collection: Collection
    decisions: Decisions
    records: dict[int, ImageRecord]  # of every image in a candidate pair

    def row_record(self, row: int) -> ImageRecord:
        return self.records[int(self.collection.ids[row])]

    def pair(self, k: int, reverse: bool = False) -> Pair:
        """Candidate pair ``k`` as decided (its first image indexed first), or with ``reverse`` the other
        way round, its transform then mapping the first image onto the second."""
        d, pairs = self.decisions, self.decisions.pairs
        check = d.checks.get(k)
        inputs = {name: round(float(pairs.features[k, n]), 4) for n, name in enumerate(FEATURES)}
        if check is not None:
            # the residual in per cent of the inliers' keypoint size; none where no transform was fitted
            residual = round(check.residual * 100, 3) if check.geometry is not None else None
            inputs.update(matches=check.matches, inliers=check.inliers,
                          inlier_fraction=round(check.inlier_fraction, 4), inlier_share=round(check.inlier_share, 4),
                          residual=residual, keypoints=check.keypoints, spread=round(check.spread, 4),
                          agreement=round(check.agreement, 4), overhang=round(check.overhang, 4))
        a, b = self.row_record(pairs.left[k]), self.row_record(pairs.right[k])
        geometry = check.geometry if check is not None else None
        transform = transform_dict(geometry.transform(reverse)) if geometry is not None else None
        return Pair(*((b, a) if reverse else (a, b)), d.level, float(d.score[k]), float(d.cheap[k]),
                    bool(d.score[k] >= d.cut), bool(d.verified[k]), bool(pairs.exact[k]), inputs, transform,
                    bool(d.gated[k]))

    def groups(self) -> list[list[int]]:
        """Star groups of collection rows, each built around its first image in ``centre_order``, then keeper
        first (``keeper_ranking``)."""
        matched = self.decisions.matched()
        left, right = self.decisions.pairs.left[matched], self.decisions.pairs.right[matched]
        records = {row: self.row_record(row) for row in np.unique(np.concatenate([left, right])).tolist()}
        rank = np.zeros(len(self.collection.ids), dtype=np.int64)
        order = sorted(records, key=lambda r: centre_order(records[r]))
        rank[order] = np.arange(len(order))
        groups = star_groups(len(self.collection.ids), left, right, rank, ENOUGH_AGREEING[self.decisions.level])
        return [[group[k] for k in keeper_ranking([records[r] for r in group])] for group in groups]


def decide(reads: Reads, level: str = "copy", cut: float | None = None, model: str | None = None,
           verify: bool = True, progress: bool = False) -> Decided:
    """Every candidate pair of the index decided at ``level`` (embeddings used when the index has them);
    ``progress``: bars on stderr while borderline pairs are verified."""
    check_level(level)
    model = embedding_model(reads, model)
    version = reads.data_version()  # before the collection: data written meanwhile is a newer version
    col = load_collection(reads, model)
    pairs = candidates.candidate_pairs(reads, col, model, version)
    involved = np.unique(np.concatenate([pairs.left, pairs.right])) if len(pairs.left) else np.zeros(0, np.int64)
    records = reads.records(col.ids[involved].tolist())
    files: list[ImageRecord | None] = [None] * len(col.ids)
    for row in involved.tolist():
        files[row] = records[int(col.ids[row])]
    verified = kept_verifications(reads, col)
    decider = Decider(level, cut=cut, embeddings=model is not None, full_decode=reads.full_decode, progress=progress,
                      verified=verified)
    decided = Decided(col, decider.decide(pairs, files, verify), records)
    verified.save()
    tell_unreadable(decided)
    return decided


def tell_unreadable(decided: Decided) -> None:
    """Warn of indexed files that verification could not read: their pairs were decided without it."""
    rows = decided.decisions.unreadable
    if rows:
        first = decided.row_record(rows[0]).abspath
        warnings.warn(SimsearchWarning(
            f"{len(rows)} indexed file(s) could not be read to verify their pairs (gone or unreadable since they "
            f"were indexed; the first: {first}): those pairs were decided without verification; run simsearch "
            "index again to bring the index up to date"), stacklevel=3)


def kept_verifications(reads: Reads, col: Collection) -> VerifiedPairs:
    """The verifications earlier runs kept for this index (``simsearch.verified``)."""
    return VerifiedPairs.of_index(reads.directory, col.sha256, full_decode=reads.full_decode,
                                  writable=not reads.read_only)


def calibrated_groups(reads: Reads, level: str = "copy", cut: float | None = None,
                      model: str | None = None, progress: bool = False) -> list[list[int]]:
    """Duplicate groups as image ids, keeper first, largest group first."""
    decided = decide(reads, level, cut, model, progress=progress)
    return [decided.collection.ids[g].tolist() for g in decided.groups()]


def group_pairs(decided: Decided) -> list[list[Pair]]:
    """Each group as the pairs that put its members in it: the keeper's pair with each member, or,
    for a member that joined by matching the group, its best pair with another member."""
    d = decided.decisions
    matched = np.flatnonzero(d.matched())
    index: dict[tuple[int, int], int] = {}  # (left, right) -> matched pair
    by_row: dict[int, list[int]] = {}  # row -> its matched pairs
    for k, a, b in zip(matched.tolist(), d.pairs.left[matched].tolist(), d.pairs.right[matched].tolist()):
        index[(a, b)] = k
        by_row.setdefault(a, []).append(k)
        by_row.setdefault(b, []).append(k)
    out = []
    for group in decided.groups():
        position, pairs = {row: n for n, row in enumerate(group)}, []
        for member in group[1:]:
            k = index.get((min(group[0], member), max(group[0], member)))
            if k is None:  # joined by matching the group: its best pair inside it, the earlier member on a tie
                other = {j: int(d.pairs.left[j] + d.pairs.right[j]) - member for j in by_row[member]}
                k = max((j for j in other if other[j] in position), key=lambda j: (d.score[j], -position[other[j]]))
            pairs.append(decided.pair(k, reverse=d.pairs.left[k] == member))  # the member second
        out.append(pairs)
    return out


def explain(reads: Reads, a: int, b: int, level: str = "copy", cut: float | None = None,
            model: str | None = None) -> Pair:
    """The decision ``duplicates`` makes on one pair of indexed images (by id), with what geometric
    verification finds even where the decision did not need it. It is decided as ``duplicates``
    decides it, the image indexed first as the first, and told in the order asked."""
    check_level(level)
    if a == b:
        raise InvalidArgument("A and B are the same indexed image: name two different ones")
    model = embedding_model(reads, model)
    col = load_collection(reads, model)
    rows = np.searchsorted(col.ids, [a, b])
    if any(r >= len(col.ids) or col.ids[r] != i for r, i in zip(rows, (a, b))):
        raise InvalidArgument("both images must be indexed (and not removed)")
    density = row_density(col, rows)
    pairs = pair_features(col, np.array([rows.min()]), np.array([rows.max()]), density)
    records = reads.records([a, b])
    files: list[ImageRecord | None] = [None] * len(col.ids)
    files[rows[0]], files[rows[1]] = records[a], records[b]
    options = {"cut": cut, "embeddings": model is not None, "full_decode": reads.full_decode,
               "verified": kept_verifications(reads, col)}
    decided = Decided(col, Decider(level, **options).decide(pairs, files), records)
    if not decided.decisions.verified[0] and not pairs.exact[0]:
        # decided without verification, as `duplicates` decides it; verify to show what geometry says
        again = Decider(level, verify_all=True, **options).decide(pairs, files)
        decided.decisions.checks, decided.decisions.unreadable = again.checks, again.unreadable
    options["verified"].save()
    tell_unreadable(decided)
    return decided.pair(0, reverse=bool(rows[0] > rows[1]))


def embedding_model(reads: Reads, model: str | None) -> str | None:
    """The embedder whose vectors decide pairs: ``model``, or the index's own; None for a hash-only index."""
    return reads.model(model) if model is not None or reads.embedding_models() else None


def duplicate_ids(reads: Reads, by: str = "auto", max_distance: int | None = None,
                  min_similarity: float | None = None, model: str | None = None, *, level: str = "copy",
                  cut: float | None = None, progress: bool = False) -> list[list[int]]:
    """Duplicate groups as lists of image ids, largest first: ``auto`` by calibrated decisions at
    ``level`` (keeper first), the single-feature rules as connected components of their pairs."""
    if by not in DUPLICATE_METHODS:
        raise InvalidArgument(f"unknown duplicate method {by!r}; choose one of {', '.join(DUPLICATE_METHODS)}")
    check_distance(max_distance)
    check_similarity(min_similarity)
    _check_applies(by, max_distance, min_similarity, level, cut)
    if by == "auto":
        return calibrated_groups(reads, level, cut, model, progress)
    with reads.engine.connect() as conn:
        rows = conn.execute(select(Image.id, Image.sha256, Image.pixel_digest)
                            .where(Image.status == OK).order_by(Image.id)).all()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    edges = [equal_edges([r[1] for r in rows]), equal_edges([r[2] for r in rows])]
    if by in HASH_METHODS:
        _, codes = reads.hash_codes(by)
        edges.append(hamming_edges(codes, DEFAULT_MAX_DISTANCE[by] if max_distance is None else max_distance))
    if by == "embedding":
        threshold = DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity
        edges.append(_embedding_edges(reads, ids, model, threshold))
    i = np.concatenate([e[0] for e in edges])
    j = np.concatenate([e[1] for e in edges])
    return [ids[g].tolist() for g in connected_groups(len(ids), i, j)]


def _check_applies(by: str, max_distance: int | None, min_similarity: float | None, level: str,
                   cut: float | None) -> None:
    """An option the method ``by`` does not use is an error: whoever set it expects it to act."""
    unused = [name for name, given, used in (("cut", cut is not None, by == "auto"),
                                             ("level", level != "copy", by == "auto"),
                                             ("max_distance", max_distance is not None, by in HASH_METHODS),
                                             ("min_similarity", min_similarity is not None, by == "embedding"))
              if given and not used]
    if unused:
        raise InvalidArgument.hinted(
            f"{{}} not used by {by!r}: cut and level go with auto, max distance with a hash, min similarity with "
            "embedding", ", ".join(unused), ", ".join("--" + name.replace("_", "-") for name in unused))


# A picture with uniform margins (a frame, a letterbox) or filled corners counts its pixels at this share against
# one without: a framed copy of an image, measured at the same scale, must not outrank it (the work image it is
# measured on blurs a line of frame into the picture), while one at a clearly higher resolution still does.
MARGINS_SHARE = 0.95


# Pictures whose shapes (long side over short side) differ by at most this share count as one shape: rounding a
# resized copy's sides moves its shape by well under 1 %, an aspect change (a stretch) by 10 % and more.
SHAPE_TOLERANCE = 0.015


def keep_first(reads: Reads, group: list[int]) -> list[ImageRecord]:
    """A group's records, the one to keep first: see ``keeper_ranking``."""
    records = list(reads.records(group).values())
    return [records[k] for k in keeper_ranking(records)]


def keeper_ranking(records: list[ImageRecord]) -> list[int]:
    """The positions of a group's ``records`` in the order to keep them: files before symbolic links, then those
    whose picture has the shape the most members share, then ``keeper_order``. Most edits keep the picture's
    shape (resizes, recompressions, overlays, colour, turns by 90 degrees), so the original shares it with most
    of its copies, while a copy stretched by an aspect change, which has more pixels than the original, has a
    shape of its own. The shared shape is that of the member with the most others within ``SHAPE_TOLERANCE`` of
    it (the first in ``keeper_order`` on a tie), so in a group of two shapes the larger picture still comes
    first."""
    if not records:
        return []
    keys = [keeper_order(r) for r in records]
    shapes = np.log([_shape(r) for r in records])
    tolerance = np.log1p(SHAPE_TOLERANCE)
    ascending = np.sort(shapes)
    near = (np.searchsorted(ascending, shapes + tolerance, side="right")
            - np.searchsorted(ascending, shapes - tolerance, side="left"))  # members within tolerance of each
    most = min(range(len(records)), key=lambda k: (-near[k], keys[k]))
    shared = np.abs(shapes - shapes[most]) <= tolerance
    return sorted(range(len(records)), key=lambda k: (keys[k][0], not shared[k], keys[k]))


def _shape(r: ImageRecord) -> float:
    """The picture's long side over its short side (a picture turned by 90 degrees has the same shape)."""
    width, height = r.picture
    return max(width, height, 1) / max(1, min(width, height))


def keeper_order(r: ImageRecord) -> tuple:
    """Which image to keep of those ``keeper_ranking`` ranks alike: files before symbolic links, then
    the most pixels of picture (uniform margins and filled corners left out, and counted down: ``MARGINS_SHARE``),
    then as ``centre_order``."""
    area, (width, height) = r.width * r.height, r.picture
    picture = width * height * MARGINS_SHARE if width * height < area else area
    return os.path.islink(r.abspath), -picture, *centre_order(r)[1:]


def centre_order(r: ImageRecord) -> tuple:
    """Which image a calibrated group is built around (``decide.star_groups``): files before symbolic links,
    then the largest image, the largest file, the oldest, and by path. (Around the keeper instead, fewer
    copies joined their group: grouped F1 0.9955 against 0.9979 on a generated collection.)"""
    return os.path.islink(r.abspath), -(r.width * r.height), -r.size, r.mtime_ns, r.path


def imagededup_map(reads: Reads, groups: list[list[ImageRecord]]) -> dict[str, list[str]]:
    """imagededup's ``{path: [paths of its duplicates]}`` map over every indexed image."""
    mapping = {r.path: [] for r in reads.ordered(reads.image_ids())}
    for group in groups:
        for rec in group:
            mapping[rec.path] = [o.path for o in group if o is not rec]
    return mapping


def _embedding_edges(reads: Reads, ids: np.ndarray, model: str | None, min_similarity: float):
    """Pairs of rows of ``ids`` whose embeddings are at least ``min_similarity`` alike."""
    model = reads.model(model)
    vec_ids, vectors = reads.vectors(model)
    left, right = reads.vector_index(model).pairs(vectors, min_similarity)
    rows = np.searchsorted(ids, vec_ids)  # both in id order; every embedded image is in ids
    return rows[left], rows[right]


def equal_edges(values: list) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking rows with equal, non-null values (a chain through each group)."""
    keyed = sorted((v, i) for i, v in enumerate(values) if v is not None)
    i, j = [], []
    for (va, ia), (vb, ib) in zip(keyed, keyed[1:]):
        if va == vb:
            i.append(ia)
            j.append(ib)
    return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64)
