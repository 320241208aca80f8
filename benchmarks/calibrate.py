"""Fit the duplicate decision models shipped in simsearch/data/duplicate_model.json.

1. Generate edited-copy collections with ``copies.py`` (seeded; bases split into fit and val by group), and
   small collections of a few units of each split (SMALL_UNITS).
2. Index both with embeddings, take every candidate pair (``simsearch.pairs``) and verify all of them
   geometrically (``simsearch.verify``), so both the cheap and the verified model have inputs.
3. For each level (copy, scene) and each variant (with embeddings, hashes only), fit a cheap and a
   verified model (gradient-boosted trees, monotone in every input, exported as arrays) on the fit split only
   (for copy with embeddings, also a fitted model for pairs with a transform, free in the embedding's inputs:
   FITTED_FREE); choose the borderline band (the cheap scores for which verification runs: every pair at or
   above its low end) and the cut on the fit split only.
4. Report pair-level precision, recall, F1 and average precision on the val split, whose images
   were never fitted on, and write the models with their provenance.

``../shared/data/holdout/`` is never read.

Usage: python benchmarks/calibrate.py [--seed 0] [--copies 6] [--work DIR [--reuse]] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import copies
import numpy as np
from common import NARROWER_LOW_ENDS

import simsearch
from simsearch.decide import (
    MODEL_FILE,
    VERIFICATION_ROW,
    gated,
    inputs,
    verification_row,
    verified_probability,
)
from simsearch.evaluate import load_ground_truth
from simsearch.pairs import Pairs, candidate_pairs, load_collection
from simsearch.verify import as_asked, keypoints, orient, verify_pairs

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "simsearch" / "data" / MODEL_FILE
CHEAP = ["cosine", "cosine2", "margin", "phash", "phash0", "dhash", "ahash", "aspect", "area"]
CHEAP_HASHES = ["phash", "phash0", "dhash", "ahash", "aspect", "area"]
VERIFY = ["matches", "inliers", "inlier_fraction", "inlier_share", "residual", "keypoints", "spread", "agreement"]
# the band's low end keeps this share of the fit split's true pairs, per level. Copy keeps 0.999: its pairs below
# 0.995's end were hard copies in dense families (24 to 64 copies a base: a crop turned 180 degrees and framed ranks
# below its own family's look-alikes), which verification then finds (2026-11-27: the validation collections' grouped
# F1 rose by up to 0.008, 32 % more borderline pairs at 100k images). Scene's end at 0.999 verified 34 % more fit
# pairs for 0.004 pair F1 on the validation split, and `dups`' potato video frames joined (same-scene F1 0.873 to
# 0.833): it keeps 0.995
BAND_RECALL = {"copy": 0.999, "scene": 0.995}
# every pair at or above the band's low end is verified (the band's high end is 1): the cheap model's surest pairs
# were taken unverified once, above a high end where fit pairs were 99.5 % precise, and each kind of collection the
# fit data lacks broke it. Scene: rooms alike in kind fool the cheap features. Copy without embeddings: hashes say
# little of smooth pictures (on 5,000 crops of product-like photos, stages.py's folder of 458 potatoes on black, it
# took different potatoes at 0.83 to 0.99 and grouped 1,717 images: pair precision 0.005, 0.980 verified). Copy with
# embeddings: in a small collection an image's 20th neighbour is an unrelated picture, so the frames of a burst
# stand out of it as copies do (small.py's collections of 61 and 94 images, F1 0.834 and 0.900; 0.926 and 0.959
# verified); in a sparse one an unrelated photo of another size stands out as a crop does (another listing's room,
# cosine 0.51 to 0.74, cheap probability 0.95 to 0.97, generated seed 10). It verifies 16 % more fit pairs
# (2026-11-27)
# a level's probability is the larger of its own and that of the level it includes (a copy is a shot
# of the same scene); levels are fitted in this dict's order
INCLUDES = {"copy": None, "scene": "copy"}
# the cheap inputs each level's verified model sees beside the verification's. Scene leaves out the margin
# (how far a pair stands out of its neighbourhood): generated units stand far apart, so it teaches the
# trees to accept rooms alike in kind. With the cosine and without the margin, scene's pair F1 on the fit
# split was 0.909, against 0.900 with neither (2026-11-26). Scene also leaves out what tells a copy from another
# shot: the pictures' agreement and the inliers' share of the matches (a copy keeps nearly all its matches where
# the transform puts them, a burst frame's moving parts do not fit), and the inliers' residual (a copy's fit is
# exact). Other shots of one scene span all three, and with them the scene cut moved from 0.5 to 0.45 and the
# potato frames of `dups` that fall near it joined (same-scene F1 0.873 to 0.833 with the agreement; with the
# residual over the keypoints' size, 0.873 to 0.833 and the validation collection's 0.769 to 0.700; 2026-11-27)
VERIFIED_LEAVES_OUT = {"copy": (), "scene": ("margin", "cosine2", "agreement", "inlier_share", "residual")}
# copy rejects a verified pair where the verification saw enough of both images and no transform explains
# enough matches (``simsearch.decide.gated``): a copy keeps most of its points. Without the gate, the trees
# let embedding margin outvote it where no fit pair was (two cats in a collection with no other cat: 4
# inliers of 727 keypoints, accepted). Scene pairs may share little geometry, so scene has no such part.
# Each level may also reject a pair whose inliers, however many, are bunched in a small part of the images (a
# shared watermark), below the spread its fit data allows (for scene, from copy's inlier count up): the trees
# alone, with few such pairs to learn from, took two listings' rooms stamped with one name for copies. For scene
# no spread qualifies (other shots of one scene often match on one flat part), so scene ends with no gate. Last,
# copy rejects a pair whose pictures agree too little where the transform lays them together, below the agreement
# its fit data allows: a larger mark spreads its inliers further, but the photos around it still differ. Other
# shots of one scene agree anywhere from below 0 to 1 (a moved camera shifts near things against far ones), as often
# as different scenes do at low agreement, so scene has no such part.
# Copy also rejects a pair where each picture shows much of itself beyond the other's frame (a copy lies within
# its original, or its original within it): two overlapping shots of one scene, a camera turned a little, fit one
# transform over what they share as a copy does (benchmarks/shots.py, shots sharing 57 % of each: 49 of 50 pairs
# taken for copies without this part, 3 with it). Of the fit split's verified copies with 13 or more inliers, 1
# reached an overhang of 0.1 and none 0.15, and the trees had rejected the other shots there that did, so the fit
# data show no cost and no gain: this part is for the shots they lack.
GATED = {"copy": ("inliers", "spread", "agreement", "overhang"), "scene": ("spread",)}
GATE_KEYPOINTS = 300  # the fewer keypoints of the two images, from which the verification sees enough
GATE_RATE = 0.002  # the most true pairs the gate may hold, as a share of the fit pairs it rejects
# the largest agreement below which the gate may hold pairs: a gate overrules the trees, so it stays well below
# where verified copies with 8 or more inliers were (the fit split's lowest 0.83, the validation split's 0.44:
# fine detail, a star field or a page of text, decorrelates at a pixel's misfit); the trees weigh it above that
GATE_AGREEMENT = 0.4
# the range of overhangs from which the gate may hold pairs: the smallest where the pairs it adds are true at most
# GATE_RATE of the time. Not below 0.1: a heavily edited copy's fit may misplace the points at its edges
GATE_OVERHANG = (0.1, 0.5)
# sellers' marks in the calibration data (``copies.py --marks``): each base also stamped with one of them, so the
# verified models meet photos of different bases that match on a shared watermark alone (before they did, such
# pairs were taken as copies: 44 inliers of a watermark on two rooms of different listings, residual 0.05 per mille)
MARKS = 2
# small collections beside each split's large one: a few units drawn from that split, two copies a base, so the fit
# data holds bursts whose neighbourhood is not other frames of the burst (in a collection of 60 images, ten
# consecutive frames stand out of it as copies do). Units per collection:
SMALL_UNITS = (3, 5, 8, 12, 16, 20)
# the levels fitted on them too. Scene is not: fitted with them, its cut fell to 0.45 and the validation split's
# same-scene F1 (grouped) went from 0.776 to 0.688, `dups` same-scene from 0.873 to 0.755, for a pair F1 on the
# small validation collections of 0.723 against 0.711 (2026-11-27)
FITS_SMALL = {"copy": True, "scene": False}


# copy's verified pairs where a transform fits at least as many matches as its gate asks have a model of their own,
# free in the embedding's inputs (``simsearch.decide.verified_probability``): where the geometry shows the same
# picture, a heavily edited copy (a frame, a crop and a turn) has a low cosine and a burst frame a high one.
FITTED_FREE = {"copy": ("cosine", "cosine2", "margin"), "scene": ()}
# cuts whose F1 on the fit split is this close to the best are as good as it there (about two of the fit split's
# 2,156 copy pairs): the fit data's negatives are mostly copies' relatives, so among them the cut errs to precision.
# Unrelated photos alike in kind meet it only in new collections: at cut 0.5 instead of 0.55 (0.0001 F1 apart on
# the fit split), benchmarks/marks.py's 80 photos stamped with one name took 7 false pairs in groups instead of 2
CUT_SLACK = 0.0005
# +1: more of it means more likely a duplicate; -1: less likely; 0: either
MONOTONE = {"cosine": 1, "cosine2": 1, "margin": 1, "phash": -1, "phash0": 1, "dhash": -1, "ahash": -1,
            "aspect": -1, "area": 0, "matches": 1, "inliers": 1, "inlier_fraction": 1, "residual": -1,
            "keypoints": 0, "spread": 1, "agreement": 1, "inlier_share": 1}


def fit_trees(x: np.ndarray, y: np.ndarray, names: list[str], free: tuple[str, ...] = ()) -> dict:
    """Gradient-boosted trees (scikit-learn), monotone in each input but those ``free``, exported as plain arrays."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415 - a benchmark dependency

    clf = HistGradientBoostingClassifier(max_depth=3, max_iter=100, learning_rate=0.1, l2_regularization=1.0,
                                         min_samples_leaf=20, random_state=0,
                                         monotonic_cst=[0 if n in free else MONOTONE[n] for n in names])
    clf.fit(x, y)
    trees = []
    for (predictor,) in clf._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append({"feature": nodes["feature_idx"].tolist(), "threshold": nodes["num_threshold"].tolist(),
                      "left": np.where(leaf, -1, nodes["left"].astype(np.int64)).tolist(),
                      "right": np.where(leaf, -1, nodes["right"].astype(np.int64)).tolist(),
                      "value": nodes["value"].round(7).tolist(), "depth": int(nodes["depth"].max())})
    model = {"inputs": names, "baseline": float(np.ravel(clf._baseline_prediction)[0]), "trees": trees}
    check = predict(model, {n: x[:, k] for k, n in enumerate(names)}, names)
    gap = float(np.abs(check - clf.predict_proba(x)[:, 1]).max())
    assert gap < 1e-5, f"exported trees disagree with scikit-learn by {gap}"  # leaf values rounded to 7 decimals
    return model


def predict(model: dict, cols: dict, names: list[str]) -> np.ndarray:
    from simsearch.decide import probability  # noqa: PLC0415

    return probability({**model, "inputs": names}, cols)


def split_data(folder: Path, work: Path) -> dict:
    """Candidates, features, verification and labels of one generated split, both variants."""
    idx = simsearch.open_index(work / f"{folder.name}-index", create=True)
    idx.add([folder / "images"], workers=2, embed="efficientnet_lite0")
    records = {r.id: r for r in idx.images()}
    out = {}
    for variant, model in (("", "efficientnet_lite0"), ("_hashes", None)):
        col = load_collection(idx._reads, model)
        pairs = candidate_pairs(col)
        paths = [records[i].abspath for i in col.ids.tolist()]
        names = [records[i].path for i in col.ids.tolist()]
        points = {row: keypoints(paths[row]) for row in np.unique(np.concatenate([pairs.left, pairs.right])).tolist()}
        first, second, turned = orient(pairs.left.tolist(), pairs.right.tolist(), [records[i].sha256 for i in col.ids])
        checks = as_asked(verify_pairs(points, first, second), turned)
        found = np.array([verification_row(c) for c in checks], dtype=np.float64).reshape(-1, len(VERIFICATION_ROW))
        labels = {}
        for level in ("copy", "scene"):
            _, truth = load_ground_truth(str(folder / f"{level}.json"))
            labels[level] = (np.array([tuple(sorted((names[a], names[b]))) in truth
                                       for a, b in zip(pairs.left, pairs.right)], dtype=bool), len(truth))
        out[variant] = {"pairs": pairs, "cols": inputs(pairs, found), "labels": labels}
    idx.close()
    return out


def small_collections(work: Path, seed: int) -> dict[str, list[Path]]:
    """Per split, SMALL_UNITS collections of units drawn from that split alone (seeded), written by ``copies.py``."""
    units = copies.base_groups()
    out: dict[str, list[Path]] = {}
    for split in ("fit", "val"):
        chosen = [u for u in units if copies.split_of(u["key"]) == split]
        out[split] = []
        for k, size in enumerate(SMALL_UNITS):
            rng = random.Random(f"{seed}-{split}-{k}")
            folder = work / "collections" / f"{split}-small{k}"
            copies.write_split(rng.sample(chosen, min(size, len(chosen))), folder, rng, 2)
            out[split].append(folder)
    return out


def merged(parts: list[dict]) -> dict:
    """Several collections' candidate pairs, inputs and labels as one (for fitting and scoring only: the pairs'
    rows index different collections)."""
    out = {}
    for variant in ("", "_hashes"):
        pairs = [p[variant]["pairs"] for p in parts]
        out[variant] = {
            "pairs": Pairs(*(np.concatenate([getattr(p, f) for p in pairs]) for f in ("left", "right", "exact",
                                                                                         "features"))),
            "cols": {k: np.concatenate([p[variant]["cols"][k] for p in parts]) for k in parts[0][variant]["cols"]},
            "labels": {level: (np.concatenate([p[variant]["labels"][level][0] for p in parts]),
                               sum(p[variant]["labels"][level][1] for p in parts)) for level in INCLUDES},
        }
    return out


def band_low_end(cheap: np.ndarray, y: np.ndarray, recall: float) -> float:
    """The cheap score at or above which ``recall`` of the true pairs lie (at most 0.5)."""
    lo = float(np.quantile(cheap[y], 1 - recall)) if y.any() else 0.5
    return round(min(lo, 0.5), 4)


def final_scores(levels: dict, name: str, cols: dict, exact: np.ndarray, variant: str) -> np.ndarray:
    """A level's probability for each pair, as ``simsearch.decide.Decider`` computes it."""
    own = _own_scores(levels[name], cols, exact, variant)
    included = INCLUDES[name]
    return own if included is None else np.maximum(own, final_scores(levels, included, cols, exact, variant))


def _own_scores(level: dict, cols: dict, exact: np.ndarray, variant: str) -> np.ndarray:
    cheap = predict(level["cheap" + variant], cols, level["cheap" + variant]["inputs"])
    cheap[exact] = 1.0
    border = _border(level, cheap, cols, exact, variant)
    score = cheap.copy()
    score[border] = verified_probability(level, variant, {k: v[border] for k, v in cols.items()})
    if "gate" + variant in level:
        held = border & gated(cols, level["gate" + variant])
        score[held] = np.minimum(score[held], level["gate" + variant]["probability"])
    return score


def _border(level: dict, cheap: np.ndarray, cols: dict, exact: np.ndarray, variant: str) -> np.ndarray:
    """The pairs a level verifies, as ``simsearch.decide.Decider.borderline`` picks them."""
    lo, hi = level["band" + variant]
    return (cheap >= lo) & (cheap < hi) & ~exact


def pair_metrics(score: np.ndarray, y: np.ndarray, total: int, cut: float) -> dict:
    predicted = score >= cut
    tp = int((predicted & y).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(total, 1)
    order = np.argsort(-score, kind="stable")
    hits = np.cumsum(y[order])
    ap = float((hits / np.arange(1, len(order) + 1))[y[order]].sum() / max(total, 1))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "average_precision": round(ap, 4), "true_pairs": total, "candidates": len(y)}


def verified_share(levels: dict, name: str, cols: dict, exact: np.ndarray, variant: str) -> float:
    verified = np.zeros(len(exact), dtype=bool)
    while name is not None:
        level = levels[name]
        cheap = predict(level["cheap" + variant], cols, level["cheap" + variant]["inputs"])
        verified |= _border(level, cheap, cols, exact, variant)
        name = INCLUDES[name]
    return round(float(verified.mean()), 4)


def fit_level(fit: dict, levels: dict, level_name: str) -> dict:
    """Fit ``level_name``'s models; ``levels``: those fitted before it (the level it includes)."""
    level = {"includes": INCLUDES[level_name]} if INCLUDES[level_name] else {}
    for variant, names in (("", CHEAP), ("_hashes", CHEAP_HASHES)):
        data = fit[variant]
        y, _ = data["labels"][level_name]
        cols, exact = data["cols"], data["pairs"].exact
        level["cheap" + variant] = fit_trees(np.column_stack([cols[n] for n in names]), y, names)
        p = predict(level["cheap" + variant], cols, names)
        p[exact] = 1.0
        level["band" + variant] = [band_low_end(p[~exact], y[~exact], BAND_RECALL[level_name]), 1.0]
        # the verified model sees the pairs it will be asked about: those at or above the band's low end
        asked = (p >= level["band" + variant][0]) & ~exact
        gate = choose_gate(cols, y, asked, GATED[level_name], levels.get(INCLUDES[level_name] or "", {}).get(
            "gate" + variant))
        if gate["fit_pairs"]:  # none where nothing is rare enough in true pairs
            level["gate" + variant] = gate
        verified_names = [n for n in names + VERIFY if n not in VERIFIED_LEAVES_OUT[level_name]]
        level["verified" + variant] = fit_trees(np.column_stack([cols[n][asked] for n in verified_names]), y[asked],
                                                verified_names)
        free = tuple(n for n in FITTED_FREE[level_name] if n in verified_names)  # none without embeddings
        if free and gate["fit_pairs"]:
            strong = asked & (cols["inliers"] >= np.log1p(gate["below_inliers"]))
            fitted = fit_trees(np.column_stack([cols[n][strong] for n in verified_names]), y[strong], verified_names,
                               free)
            level["verified_fitted" + variant] = {**fitted, "from_inliers": gate["below_inliers"]}
    y, total = fit[""]["labels"][level_name]
    score = final_scores({**levels, level_name: level}, level_name, fit[""]["cols"], fit[""]["pairs"].exact, "")
    level["cut"] = choose_cut(score, y, total)
    return level


def choose_gate(cols: dict, y: np.ndarray, asked: np.ndarray, parts: tuple[str, ...], included: dict | None) -> dict:
    """With the "inliers" part, the largest inlier count (up to 30) below which the verified fit pairs with at
    least GATE_KEYPOINTS keypoints are true at most GATE_RATE of the time (without it, the included level's count,
    and no pair held for its count); then, among pairs with that many inliers or more, the largest spread (up to
    0.1) below which they are too; then the largest agreement (up to GATE_AGREEMENT) below which the pairs it
    adds are; then the smallest overhang (in GATE_OVERHANG) from which the pairs it adds are. The rate of all it
    holds is the probability the gate gives them."""
    # as it starts, it holds nothing
    gate = {"below_inliers": 0, "min_keypoints": GATE_KEYPOINTS, "below_spread": 0.0, "below_agreement": -1.0}
    if "inliers" not in parts:
        gate.update(below_inliers=included["below_inliers"] if included else 0, min_keypoints=None)
    for below in range(1, 31) if "inliers" in parts else ():
        held = asked & gated(cols, {**gate, "below_inliers": below})
        if held.any() and y[held].mean() <= GATE_RATE:
            gate["below_inliers"] = below
    for below in np.arange(0.005, 0.1001, 0.005) if "spread" in parts else ():
        held = asked & gated(cols, {**gate, "below_spread": round(float(below), 3)})
        if held.any() and y[held].mean() <= GATE_RATE:
            gate["below_spread"] = round(float(below), 3)
    for below in np.arange(-0.5, GATE_AGREEMENT + 0.0001, 0.05) if "agreement" in parts else ():
        held = asked & gated(cols, {**gate, "below_agreement": round(float(below), 2)})
        if held.any() and y[held].mean() <= GATE_RATE:
            gate["below_agreement"] = round(float(below), 2)
    for start in np.arange(GATE_OVERHANG[1], GATE_OVERHANG[0] - 0.0001, -0.05) if "overhang" in parts else ():
        held = asked & gated(cols, {**gate, "from_overhang": round(float(start), 2)})
        if held.any() and y[held].mean() <= GATE_RATE:
            gate["from_overhang"] = round(float(start), 2)
    held = asked & gated(cols, gate)
    return {**gate, "probability": round(float(y[held].mean()), 5) if held.any() else 0.0,
            "fit_pairs": int(held.sum()), "fit_true_pairs": int(y[held].sum())}


def narrower_bands(levels: dict, splits: dict[str, dict]) -> list[dict]:
    """What verifying fewer pairs would cost at level copy with embeddings: each split's pair metrics and share of
    candidate pairs verified, with the band's low end at each of NARROWER_LOW_ENDS instead of the calibrated one
    (``duplicates_scale.py`` reports the time each would take over 100k images)."""
    out = []
    for low in NARROWER_LOW_ENDS:
        narrower = {**levels, "copy": {**levels["copy"], "band": [low, 1.0]}}
        row = {"low_end": low}
        for split, data in splits.items():
            y, total = data[""]["labels"]["copy"]
            cols, exact = data[""]["cols"], data[""]["pairs"].exact
            score = final_scores(narrower, "copy", cols, exact, "")
            row[split] = {**pair_metrics(score, y, total, narrower["copy"]["cut"]),
                          "verified_share": verified_share(narrower, "copy", cols, exact, "")}
        out.append(row)
    return out


def choose_cut(score: np.ndarray, y: np.ndarray, total: int) -> float:
    """The highest cut whose neighbourhood (+-0.05) has a mean F1 on the fit split within CUT_SLACK of the best:
    a wide plateau rather than a spike, which moves with every refit, and on it the precise end."""
    f1 = {round(c, 2): pair_metrics(score, y, total, c)["f1"] for c in np.arange(0.05, 0.96, 0.05)}
    plateau = {c: (f1[round(c - 0.05, 2)] + f1[c] + f1[round(c + 0.05, 2)]) / 3 for c in f1 if 0.1 <= c <= 0.9}
    best = max(plateau.values())
    return float(max(c for c, mean in plateau.items() if mean >= best - CUT_SLACK))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--work", default=None, help="keep the generated collections and indexes here")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the models (default: the shipped file)")
    parser.add_argument("--reuse", action="store_true",
                        help="refit on the collections, pairs and verifications an earlier run kept in --work")
    opts = parser.parse_args()
    if not (copies.DUPS / "groups.json").exists():
        print(f"SKIPPED: {copies.DUPS} is absent (the development data set lives in ../shared/data)")
        sys.exit(0)
    work = Path(opts.work or tempfile.mkdtemp())
    started = time.time()
    try:
        if opts.reuse and (work / "pairs.pkl").exists():
            kept = pickle.loads((work / "pairs.pkl").read_bytes())
            if len(kept) != 4:  # an earlier calibrate.py's, before the small collections
                raise SystemExit(f"{work / 'pairs.pkl'} holds no small collections: run again without --reuse")
            fit, fit_small, val, val_small = kept
        else:
            for ours in ("collections", "fit-index", "val-index"):  # an earlier run's, never anything else
                shutil.rmtree(work / ours, ignore_errors=True)
            for ours in work.glob("*-small*-index"):
                shutil.rmtree(ours)
            sys.argv = ["copies.py", str(work / "collections"), "--seed", str(opts.seed), "--copies", str(opts.copies),
                        "--marks", str(MARKS)]
            copies.main()
            small = small_collections(work, opts.seed)
            fit = split_data(work / "collections" / "fit", work)
            fit_small = merged([split_data(f, work) for f in small["fit"]])
            val = split_data(work / "collections" / "val", work)
            val_small = merged([split_data(f, work) for f in small["val"]])
            (work / "pairs.pkl").write_bytes(pickle.dumps((fit, fit_small, val, val_small)))
        levels, report, fitted_on_by_level = {}, {}, {}
        for name in INCLUDES:
            fitted_on = fitted_on_by_level[name] = merged([fit, fit_small]) if FITS_SMALL[name] else fit
            levels[name] = fit_level(fitted_on, levels, name)
            report[name] = {}
            for split, data in (("fit", fitted_on), ("val", val), ("val_small", val_small)):
                for variant in ("", "_hashes"):
                    y, total = data[variant]["labels"][name]
                    score = final_scores(levels, name, data[variant]["cols"], data[variant]["pairs"].exact, variant)
                    report[name][f"{split}{variant or '_embeddings'}"] = {
                        **pair_metrics(score, y, total, levels[name]["cut"]),
                        "verified_share": verified_share(levels, name, data[variant]["cols"],
                                                         data[variant]["pairs"].exact, variant)}
        summary = json.loads((work / "collections" / "summary.json").read_text())
        model = {
            "provenance": {
                "made_by": "python benchmarks/calibrate.py " + " ".join(f"--{k} {v}" for k, v in
                                                                       (("seed", opts.seed), ("copies", opts.copies))),
                "date": time.strftime("%Y-%m-%d"),
                "data": "edited copies (benchmarks/copies.py) of the ../shared/data/dups bases and samples/, each "
                        f"base also stamped with one of {MARKS} sellers' marks, bases split by group into fit and "
                        f"val, and per split {len(SMALL_UNITS)} small collections of {SMALL_UNITS} of its units with 2 "
                        "copies a base (levels in FITS_SMALL fitted on them too); fitted on fit only; holdout never read",
                "collections": summary,
                "pair_metrics_before_grouping": report,
                "narrower_copy_bands": narrower_bands(levels, {"fit": fitted_on_by_level["copy"], "val": val,
                                                               "val_small": val_small}),
                "seconds": round(time.time() - started, 1),
            },
            "levels": levels,
        }
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(model, indent=1) + "\n")
        print(json.dumps(model["provenance"], indent=1))
    finally:
        if opts.work is None:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
