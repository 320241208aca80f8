"""Duplicate decisions: a calibrated probability for every candidate pair, one default cut per
level, and groups that do not chain.

Levels: ``copy`` (the same picture after edits) and ``scene`` (also other shots of the same
scene). Each level has logistic models fitted by ``benchmarks/calibrate.py`` on generated
edited-copy collections and shipped in ``simsearch/data/duplicate_model.json``:

- a *cheap* model on the pair features of ``simsearch.pairs`` (no image decoded);
- a *verified* model that adds geometric verification (``simsearch.verify``), used for the
  pairs whose cheap probability lies in the level's borderline band, and only for them (the calibration sets
  every band's high end at 1: the cheap model's surest pairs are verified too, see ``benchmarks/calibrate.py``);
  at level copy, the verified pairs where a transform fits enough matches have a *fitted* model of their own
  (``verified_probability``);
- both in a variant for indexes without embeddings (hashes only);
- for ``copy``, a gate: a verified pair whose two images showed enough keypoints, and too few of
  whose matches fit one transform, or whose matches that fit are bunched in a small part of either
  image (two photos stamped with one watermark), or whose pictures each lie well beyond the other's frame
  (two overlapping shots of one scene), gets the small probability the fit data gave such pairs, whatever the
  embeddings say (``gated``).

Pairs of equal bytes or equal decoded pixels are duplicates at probability 1.

Grouping: images are taken in order (``duplicates.centre_order``: largest image, then largest file, oldest,
path); each image not yet in a group that has matches not yet in a group becomes a centre, and its group is it
plus those direct matches, plus any image that matches at least half of the group (or ``ENOUGH_AGREEING`` of
its members, whichever is fewer) and at least two of its members. So one false link adds at most one image to
a group (the centre's) and never joins two groups. The group's keeper is then chosen in it
(``duplicates.keeper_ranking``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

from .errors import InvalidArgument
from .names import LEVELS
from .pairs import FEATURES, Pairs
from .reads import ImageRecord
from .verified import VerifiedPairs
from .verify import (
    Keypoints,
    Transform,
    Verification,
    as_asked,
    keypoints,
    orient,
    verify_pairs,
)

MODEL_FILE = "duplicate_model.json"
VERIFY_WAVE = 256  # left images whose pairs are verified together (a pool's worth of work between drops)
SAVE_EVERY_S = 60.0  # kept verifications are written this often during a run (and at its end)
KEYPOINT_CAP = 32_768  # images whose keypoints verification keeps between waves (about 100 KB each: 3.3 GB)
# Matches that always suffice to join a group the centre missed, however large the group: an image is compared
# with its nearest neighbours only (``pairs.NEIGHBOURS``), so half of a family of 50 copies is out of its reach.
# Scene asks more: its pairs are less sure, and bursts and videos chain.
ENOUGH_AGREEING = {"copy": 5, "scene": 10}


@cache
def model_data() -> dict:
    """The shipped calibration: models, cuts and bands per level, and their provenance."""
    return json.loads(resources.files("simsearch").joinpath("data", MODEL_FILE).read_text())


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise InvalidArgument(f"unknown duplicate level {level!r}; choose one of {', '.join(LEVELS)}")
    return level


def default_cut(level: str) -> float:
    return float(model_data()["levels"][check_level(level)]["cut"])


def inputs(pairs: Pairs, verification: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every named model input of each pair; ``verification`` is (pairs, 8): matches, inliers, inlier
    fraction, residual, keypoints, the inliers' spread, the pictures' agreement and overhang
    (``verify.Verification``)."""
    cols = {name: pairs.features[:, k] for k, name in enumerate(FEATURES)}
    cols["cosine2"] = cols["cosine"] ** 2
    cols["phash0"] = (cols["phash"] == 0).astype(np.float64)
    if verification is not None:
        cols["matches"] = np.log1p(verification[:, 0])
        cols["inliers"] = np.log1p(verification[:, 1])
        cols["inlier_fraction"] = np.minimum(verification[:, 2], 1.0)
        cols["inlier_share"] = verification[:, 1] / np.maximum(verification[:, 0], 1.0)  # Verification.inlier_share
        cols["residual"] = np.minimum(verification[:, 3] * 100.0, 25.0)  # per cent of the keypoints' size
        cols["keypoints"] = np.log1p(verification[:, 4])  # how much the verification could see
        cols["spread"] = verification[:, 5]
        cols["agreement"] = verification[:, 6]
        cols["overhang"] = verification[:, 7]
    return cols


def gated(cols: dict[str, np.ndarray], gate: dict) -> np.ndarray:
    """Verified pairs a level's gate rejects: both images showed at least ``min_keypoints`` keypoints and
    fewer than ``below_inliers`` matches fit one transform (a copy keeps most of its points); or at least
    ``below_inliers`` fit, but their spread (``verify.Verification.spread``) is under ``below_spread`` (a
    copy's inliers cover the picture the two share, a shared watermark's only the watermark), or the pictures'
    agreement where the transform lays them together (``verify.Verification.agreement``) is under
    ``below_agreement`` (a copy's pictures agree everywhere, a shared watermark's nowhere else), or each picture
    shows at least ``from_overhang`` of itself beyond the other's frame (``verify.Verification.overhang``: a copy
    lies within its original or its original within it; two overlapping shots of one scene each show more)."""
    few = cols["inliers"] < np.log1p(gate["below_inliers"])
    held = ~few & ((cols["spread"] < gate.get("below_spread", 0.0))
                   | (cols["agreement"] < gate.get("below_agreement", -1.0))
                   | (cols["overhang"] >= gate.get("from_overhang", np.inf)))
    if gate["min_keypoints"] is not None:  # None: this level holds no pair for its inlier count (scene)
        held |= few & (cols["keypoints"] >= np.log1p(gate["min_keypoints"]))
    return held


def probability(model: dict, cols: dict[str, np.ndarray]) -> np.ndarray:
    """A fitted model's probability: boosted trees over named inputs (``benchmarks/calibrate.py``)."""
    x = [np.ascontiguousarray(cols[name], dtype=np.float64) for name in model["inputs"]]
    raw = np.full(len(x[0]) if x else 0, float(model["baseline"]))
    for tree in model["trees"]:
        raw += _tree_value(tree, x, 0)
    return 1.0 / (1.0 + np.exp(-np.clip(raw, -40, 40)))


def verified_probability(level: Mapping, variant: str, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Verified pairs' probability at a level: its verified model's, except for pairs where a transform fits
    at least ``from_inliers`` matches, which its *fitted* model (where it has one) scores: that model is free in
    the embedding's inputs, since where geometry shows the same picture, a low cosine marks a heavily edited copy
    and a high one may mark a burst frame; where geometry shows little, the cosine counts only upward."""
    score = probability(level["verified" + variant], cols)
    fitted = level.get("verified_fitted" + variant)
    if fitted is not None:
        strong = cols["inliers"] >= np.log1p(fitted["from_inliers"])
        if strong.any():
            score[strong] = probability(fitted, {name: col[strong] for name, col in cols.items()})
    return score


def _tree_value(tree: dict, x: list[np.ndarray], node: int) -> np.ndarray | float:
    """Each row's leaf value under ``node``: one comparison of a whole column per split (the trees
    are shallow), which is far faster than walking rows through the tree one level at a time."""
    if tree["left"][node] < 0:
        return tree["value"][node]
    return np.where(x[tree["feature"][node]] <= tree["threshold"][node], _tree_value(tree, x, tree["left"][node]),
                    _tree_value(tree, x, tree["right"][node]))


@dataclass
class Decisions:
    """Every candidate pair's probability at one level, and what verification found."""

    pairs: Pairs
    level: str
    cut: float
    cheap: np.ndarray  # probability without verification
    score: np.ndarray  # final probability
    verified: np.ndarray  # bool: geometric verification decided this pair
    gated: np.ndarray  # bool: a gate set the final probability (``gated``)
    checks: dict[int, Verification] = field(default_factory=dict)  # pair index -> verification
    unreadable: list[int] = field(default_factory=list)  # rows whose files verification could not read

    def matched(self) -> np.ndarray:
        return self.score >= self.cut


class Decider:
    """Scores candidate pairs at a level, verifying the borderline ones with the images on disk.

    A level that includes another (scene includes copy: a copy is a shot of the same scene) scores
    each pair as the larger of its own probability and the included level's; the pairs either level
    finds borderline are verified once, together."""

    def __init__(self, level: str = "copy", *, cut: float | None = None, embeddings: bool = True,
                 full_decode: bool = False, verify_all: bool = False, progress: bool = False,
                 verified: VerifiedPairs | None = None):
        data = model_data()["levels"][check_level(level)]
        variant = "" if embeddings else "_hashes"
        self.level = level
        self.cheap_model = data["cheap" + variant]
        self.models = data
        self.variant = variant
        self.gate = data.get("gate" + variant)
        self.band = (0.0, 1.0 + 1e-9) if verify_all else tuple(data["band" + variant])
        self.cut = default_cut(level) if cut is None else float(cut)
        if not 0.0 < self.cut <= 1.0:
            raise InvalidArgument(f"the cut is a probability in (0, 1], got {self.cut}")
        self.full_decode = full_decode
        self.progress = progress
        self.verified = verified  # verifications kept between runs (simsearch.verified)
        self.includes = None
        if data.get("includes"):
            self.includes = Decider(data["includes"], embeddings=embeddings, full_decode=full_decode,
                                    verify_all=verify_all, progress=progress, verified=verified)

    def decide(self, pairs: Pairs, files: list[ImageRecord | None], verify_pairs: bool = True,
               given: Mapping[int, Callable[[], Keypoints | None]] | None = None) -> Decisions:
        """``files``: every collection row's record, for verification (None where no pair needs it);
        ``given``: rows whose keypoints come from a function instead of their file (a query image that
        is not indexed), called only where one of their pairs is verified."""
        cheap = {level.level: level._cheap(pairs) for level in self._chain()}
        none = np.zeros(0, dtype=np.int64)
        border = {level.level: level.borderline(pairs, cheap[level.level]) if verify_pairs else none
                  for level in self._chain()}
        todo = np.unique(np.concatenate(list(border.values())))
        found, unreadable = self._verify_all(files, pairs.left[todo], pairs.right[todo], given)
        checks = {k: check for k, check in zip(todo.tolist(), found) if check is not None}
        # a pair with a file that cannot be read now (gone, a drive not mounted) keeps its cheap probability
        unverified = todo[[check is None for check in found]]
        border = {level: np.setdiff1d(rows, unverified) for level, rows in border.items()}
        decisions = self._scored(pairs, cheap, border, checks)
        decisions.unreadable = sorted(unreadable)
        return decisions

    def _chain(self) -> Iterator[Decider]:
        """This level and those it includes."""
        level = self
        while level is not None:
            yield level
            level = level.includes

    def _cheap(self, pairs: Pairs) -> np.ndarray:
        cheap = probability(self.cheap_model, inputs(pairs))
        cheap[pairs.exact] = 1.0
        return cheap

    def borderline(self, pairs: Pairs, cheap: np.ndarray) -> np.ndarray:
        """The pairs this level verifies: cheap probability in its band; never exact copies."""
        lo, hi = self.band
        return np.flatnonzero((cheap >= lo) & (cheap < hi) & ~pairs.exact)

    def _scored(self, pairs: Pairs, cheap_by_level: dict[str, np.ndarray], border_by_level: dict[str, np.ndarray],
                verifications: dict[int, Verification]) -> Decisions:
        """This level's decisions, given every level's cheap probabilities and verified pairs."""
        cheap = cheap_by_level[self.level]
        score = cheap.copy()
        todo = border_by_level[self.level]
        checks = {k: verifications[k] for k in todo.tolist()}
        verified = np.zeros(len(cheap), dtype=bool)
        gate_held = np.zeros(len(cheap), dtype=bool)
        if len(todo):
            found = np.array([verification_row(c) for c in checks.values()], dtype=np.float64)
            sub = Pairs(pairs.left[todo], pairs.right[todo], pairs.exact[todo], pairs.features[todo])
            cols = inputs(sub, found)
            score[todo] = verified_probability(self.models, self.variant, cols)
            if self.gate is not None:
                held = todo[gated(cols, self.gate)]
                score[held] = np.minimum(score[held], self.gate["probability"])
                gate_held[held] = True
            verified[todo] = True
        if self.includes is not None:
            inner = self.includes._scored(pairs, cheap_by_level, border_by_level, verifications)
            gate_held = np.where(inner.score > score, inner.gated, gate_held)  # the larger probability stands
            cheap, score = np.maximum(cheap, inner.cheap), np.maximum(score, inner.score)
            verified |= inner.verified
            checks = {**inner.checks, **checks}
        return Decisions(pairs, self.level, self.cut, cheap, score, verified, gate_held, checks)

    def _verify_all(self, files: list[ImageRecord | None], left: np.ndarray, right: np.ndarray,
                    given: Mapping[int, Callable[[], Keypoints | None]] | None = None,
                    ) -> tuple[list[Verification | None], set[int]]:
        """Each pair verified (in the order ``orient`` gives, told in the order asked): taken from the kept
        verifications where its two files were verified before, else checked now (and kept); None where a
        file of the pair could not be read. Also returns the rows whose files could not be read."""
        keys = {r: files[r].sha256 for r in set(left.tolist()) | set(right.tolist())}
        left, right, turned = orient(left.tolist(), right.tolist(), keys)
        found = self.verified.lookup(left, right) if self.verified is not None else [None] * len(left)
        todo = [k for k, check in enumerate(found) if check is None]
        unreadable: set[int] = set()
        if todo:  # each wave's verifications are kept as they come (``_check``)
            checks = self._check(files, [left[k] for k in todo], [right[k] for k in todo], unreadable, given)
            for k, check in zip(todo, checks):
                found[k] = check
        return as_asked(found, turned), unreadable

    def _check(self, files: list[ImageRecord | None], left: list[int], right: list[int], unreadable: set[int],
               given: Mapping[int, Callable[[], Keypoints | None]] | None = None) -> list[Verification | None]:
        """Keypoints computed when ``verification_waves`` says, held until it drops them, and one descriptor
        search per left image for all its pairs. Threads share the cores: decoding, OpenCV's
        detection and RANSAC release the GIL. Each wave's verifications join the kept ones, saved every
        SAVE_EVERY_S: an interrupted first run over a large collection leaves most of its work to the next.
        A pair with a file that cannot be read is None, and never kept (the file may be back next run);
        such files' rows are added to ``unreadable``."""
        seconds = set(right)  # only an image matched as the second of a pair is also mirrored
        given = given or {}
        known: dict[int, Keypoints | None] = {}
        seen: set[int] = set()
        found: list[Verification | None] = [None] * len(left)
        with (ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
              self._bar(len(set(left) | seconds), "img", "keypoints") as images,
              self._bar(len(left), "pair", "verifying") as bar):
            for wave in verification_waves(left, right, KEYPOINT_CAP):
                made = pool.map(lambda r: given[r]() if r in given else self._keypoints(files[r], r in seconds),
                                wave.compute)
                for row, points in zip(wave.compute, made):
                    known[row] = points
                    images.update(row not in seen)  # an image computed again is not counted twice
                    seen.add(row)
                    if points is None:
                        unreadable.add(row)
                read = [k for k in wave.pairs if known[left[k]] is not None and known[right[k]] is not None]
                wave_left, wave_right = [left[k] for k in read], [right[k] for k in read]
                checks = verify_pairs(known, wave_left, wave_right, pool.map, done=bar.update)
                bar.update(len(wave.pairs) - len(read))
                for k, check in zip(read, checks):
                    found[k] = check
                for row in wave.drop:
                    del known[row]
                if self.verified is not None:
                    self.verified.add(wave_left, wave_right, checks)
                    self.verified.checkpoint(SAVE_EVERY_S)
        return found

    def _keypoints(self, record: ImageRecord, mirrored: bool) -> Keypoints | None:
        """An image's keypoints, read as the index reads it, under the pixel limit it was indexed under."""
        return keypoints(record.abspath, full_decode=self.full_decode, mirrored=mirrored, max_pixels=record.max_pixels)

    def _bar(self, total: int, unit: str, what: str):
        """A progress bar on stderr for one stage of verification (a silent one unless ``progress``)."""
        from tqdm import tqdm  # noqa: PLC0415

        return tqdm(total=total, unit=unit, desc=f"{what} ({self.level})", disable=not self.progress or not total,
                    file=sys.stderr, leave=False)


@dataclass(frozen=True)
class Wave:
    """Pairs verified together: the images whose keypoints are computed before them, and those dropped after."""

    pairs: list[int]  # indices into the pairs verified
    compute: list[int]
    drop: list[int]


def verification_waves(left: list[int], right: list[int], cap: int | None = None) -> Iterator[Wave]:
    """The order in which pairs ``(left[k], right[k])`` are verified, and when each image's keypoints are held.
    Left images are taken VERIFY_WAVE at a time, in an order that keeps images whose pairs interlink together
    (``locality_order``); an image's keypoints are dropped after its last pair, and past ``cap`` images those
    needed last are dropped (Belady's rule) and computed again in their turn. So verification holds the
    keypoints of the images whose pairs are under way, at most ``cap`` of them, not of every verified image
    (about 100 KB each)."""
    by_left: dict[int, list[int]] = {}
    for k, a in enumerate(left):
        by_left.setdefault(a, []).append(k)
    order = locality_order(left, right)
    waves = [[k for a in order[s : s + VERIFY_WAVE] for k in by_left[a]] for s in range(0, len(order), VERIFY_WAVE)]
    rows_of = [sorted({r for k in wave for r in (left[k], right[k])}) for wave in waves]
    needed_in: dict[int, list[int]] = {}  # row -> the waves that need it, in order
    for w, rows in enumerate(rows_of):
        for row in rows:
            needed_in.setdefault(row, []).append(w)
    passed = dict.fromkeys(needed_in, 0)  # row -> how many of its waves are done
    held: set[int] = set()
    for wave, rows in zip(waves, rows_of):
        compute = [r for r in rows if r not in held]
        held.update(compute)
        drop = []
        for row in rows:
            passed[row] += 1
            if passed[row] == len(needed_in[row]):
                drop.append(row)
        held.difference_update(drop)
        if cap is not None and len(held) > cap:  # keep those needed soonest
            by_need = sorted(held, key=lambda r: needed_in[r][passed[r]])
            drop += by_need[cap:]
            held = set(by_need[:cap])
        yield Wave(wave, compute, drop)


def locality_order(left: list[int], right: list[int]) -> list[int]:
    """The left images of the pairs, ordered so that images linked by pairs come close together: reverse
    Cuthill-McKee over the graph of pairs (SciPy), which keeps the span between an image's first and last
    pair short."""
    from scipy.sparse import coo_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import reverse_cuthill_mckee  # noqa: PLC0415

    if not left:
        return []
    rows, compact = np.unique(np.concatenate([left, right]).astype(np.int64), return_inverse=True)
    a, b = compact[: len(left)], compact[len(left) :]
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(rows), len(rows))).tocsr()
    ordered = rows[reverse_cuthill_mckee((graph + graph.T).tocsr(), symmetric_mode=True)]
    lefts = set(left)
    return [r for r in ordered.tolist() if r in lefts]


VERIFICATION_ROW = ("matches", "inliers", "inlier_fraction", "residual", "keypoints", "spread", "agreement",
                    "overhang")


def verification_row(check: Verification) -> list[float]:
    """What ``inputs`` takes of a verification, in ``VERIFICATION_ROW`` order."""
    return [check.matches, check.inliers, check.inlier_fraction, check.residual, check.keypoints, check.spread,
            check.agreement, check.overhang]


def star_groups(n: int, left: np.ndarray, right: np.ndarray, rank: np.ndarray,
                enough: int | None = None) -> list[list[int]]:
    """Groups of rows (centre first, then members in ``rank`` order) from matched pairs: see the module
    docstring. ``rank[row]``: lower is a centre first; ``enough``: matches with a group's members
    that always suffice to join it (``ENOUGH_AGREEING``; None: half the group, however large)."""
    neighbours: dict[int, set[int]] = {}
    for a, b in zip(left.tolist(), right.tolist()):
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    assigned = np.zeros(n, dtype=bool)
    groups = []
    for row in sorted(neighbours, key=lambda r: rank[r]):
        if assigned[row]:
            continue
        group = [row] + [m for m in neighbours[row] if not assigned[m]]
        if len(group) == 1:
            continue
        assigned[group] = True
        _add_agreed(group, neighbours, assigned, enough)
        groups.append([row, *sorted(group[1:], key=lambda r: rank[r])])
    groups.sort(key=lambda g: (-len(g), rank[g[0]]))
    return groups


def _add_agreed(group: list[int], neighbours: dict[int, set[int]], assigned: np.ndarray, enough: int | None) -> None:
    """Add the images the centre missed that match at least half of the group (or ``enough`` of its
    members), and at least two of its members: one false link alone never brings an image in."""
    while True:
        votes: dict[int, int] = {}
        for m in group:
            for other in neighbours.get(m, ()):
                if not assigned[other]:
                    votes[other] = votes.get(other, 0) + 1
        half = (len(group) + 1) // 2
        needed = max(2, half if enough is None else min(half, enough))
        joining = [r for r, v in votes.items() if v >= needed]
        if not joining:
            return
        group.extend(joining)
        assigned[joining] = True


def transform_dict(t: Transform | None) -> dict | None:
    if t is None:
        return None
    return {"scale": t.scale, "aspect": t.aspect, "rotation": t.rotation, "flipped": t.flipped,
            "crop": list(t.crop)}
