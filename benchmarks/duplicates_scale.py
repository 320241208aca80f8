"""The cost of `duplicates` (calibrated, level copy) over 100k embedded images on this machine.

The index is generated: seeded 1280-d vectors shaped like CNN embeddings (``ann.embeddings_like``) and
random 64-bit pHashes, with 10 % of the images planted as near copies of others (vectors nudged,
hashes with a few bits flipped). The files do not exist, so the borderline pairs that would be
verified, and the images they involve, are counted, and verification is timed separately on real
photos (the ``dups`` set's borderline pairs): the projected total is the measured run, plus the keypoint
computations of verification's plan times the measured cost per image (decoding, keypoints), plus the pairs
times the cost per pair (matching, RANSAC). The plan by which verification would hold keypoints over those
pairs is counted too: the most images held at once and the keypoint computations, under
``simsearch.decide.KEYPOINT_CAP`` and without it, and the projected time with the band's low end higher
(``common.NARROWER_LOW_ENDS``: fewer pairs verified, at the cost in F1 ``calibrate.py`` reports). A second
run, with every borderline pair's verification kept by the first (``simsearch.verified``), opens no file
and is timed as it is.

Peer, in the same run: exact brute-force FAISS neighbour search (the candidate generation it
replaces) over a 20k subset, against simsearch's candidate search over the same subset.

Usage: python benchmarks/duplicates_scale.py [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
from ann import make_data
from common import DUPS, NARROWER_LOW_ENDS, peak_rss_mb, write

import simsearch
from simsearch import duplicates as dup
from simsearch.decide import KEYPOINT_CAP, verification_waves
from simsearch.hashing import DIHEDRAL, to_signed
from simsearch.pairs import NEIGHBOURS
from simsearch.schema import Embedder, Root
from simsearch.verify import Verification, keypoints, orient, verify_pairs

MODEL = "efficientnet_lite0"


def planted(n: int, seed: int = 0):
    """(vectors, dihedral pHashes) with 10 % near copies."""
    rng = np.random.default_rng(seed)
    vectors, _ = make_data(n, 1, seed)
    codes = rng.integers(0, 2**63, size=(n, len(DIHEDRAL)), dtype=np.int64).view(np.uint64)
    copies = rng.choice(n, n // 10, replace=False)
    sources = rng.integers(0, n, len(copies))
    noise = rng.standard_normal((len(copies), vectors.shape[1]), dtype=np.float32) * 0.006
    vectors[copies] = vectors[sources] + noise
    vectors[copies] /= np.linalg.norm(vectors[copies], axis=1, keepdims=True)
    flips = np.zeros(len(copies), dtype=np.uint64)
    for _ in range(3):
        flips |= np.uint64(1) << rng.integers(0, 64, len(copies)).astype(np.uint64)
    codes[copies] = codes[sources] ^ flips[:, None]
    return vectors, codes


def build_index(folder: Path, vectors: np.ndarray, codes: np.ndarray, spec: str | None = None):
    """An index of these vectors and codes, its files named but absent; ``spec``: the embedder's stored spec
    (default: a synthetic one, which no real embedder matches)."""
    from simsearch.indexer import write as w  # noqa: PLC0415

    idx = simsearch.open_index(folder, create=True)
    spec = spec or json.dumps({"name": MODEL, "dim": int(vectors.shape[1]), "weights_sha256": "synthetic"})
    with idx.atomic() as conn:
        conn.execute(Root.__table__.insert().values(path="/synthetic", path_raw=b"/synthetic"))
        conn.execute(Embedder.__table__.insert().values(name=MODEL, spec=spec, created_at=0.0))
    for start in range(0, len(vectors), 10_000):
        rows = [{"relpath": f"img{n:07d}.jpg", "size": 100_000 + n, "mtime_ns": n, "status": "ok", "error": None,
                 "sha256": f"{n:064x}", "pixel_digest": f"{n:064x}", "width": 1024, "height": 768, "format": "JPEG",
                 "mode": "RGB", "phash": to_signed(int(codes[n, 0])), "dhash": to_signed(int(codes[n, 1])),
                 "whash": 0, "ahash": to_signed(int(codes[n, 2])), "phash_dihedral": codes[n].astype("<u8").tobytes()}
                for n in range(start, min(start + 10_000, len(vectors)))]
        with idx.atomic() as conn:
            ids = w.write_files(conn, 1, rows, {})
            w.write_embeddings(conn, MODEL, ids, vectors[start : start + len(rows)])
    return idx


def timed_run(idx) -> tuple[dict, object]:
    t0 = time.perf_counter()
    decided = dup.decide(idx._reads, "copy", verify=False)  # every stage but verification (no files)
    t1 = time.perf_counter()
    groups = decided.groups()
    t2 = time.perf_counter()
    left, right = borderline_pairs(decided)
    return {"candidates": len(decided.decisions.cheap), "borderline_pairs": len(left),
            "keypoint_plan": keypoint_plan(left, right), "borderline_images": len(set(left) | set(right)),
            "groups": len(groups), "grouped_images": sum(len(g) for g in groups),
            "seconds_to_decide": round(t1 - t0, 2), "seconds_to_group": round(t2 - t1, 2)}, decided


def keypoint_plan(left: list[int], right: list[int]) -> dict:
    """How verification would hold keypoints over these pairs (``simsearch.decide.verification_waves``): the
    most images whose keypoints are held at once, and how many keypoint computations, with the cap and
    without it."""
    out = {"cap": KEYPOINT_CAP}
    for name, cap in (("capped", KEYPOINT_CAP), ("uncapped", None)):
        held, most, computed = set(), 0, 0
        for wave in verification_waves(left, right, cap):
            held.update(wave.compute)
            computed += len(wave.compute)
            most = max(most, len(held))
            held.difference_update(wave.drop)
        out[name] = {"most_held": most, "computations": computed}
    return out


def rerun_with_kept(idx, decided) -> dict:
    """A second `duplicates` over the same index, every borderline pair's verification kept by the first
    (``simsearch.verified``): timed for real, since no file is opened. The kept results are stand-ins
    (the files do not exist), so only the time means anything."""
    left, right = borderline_pairs(decided)
    kept = dup.kept_verifications(idx._reads, decided.collection)
    kept.add(left, right, [Verification(0, 0, 0, None)] * len(left))
    kept.save()
    t0 = time.perf_counter()
    again = dup.decide(idx._reads, "copy")
    groups = again.groups()
    seconds = time.perf_counter() - t0
    assert again.decisions.verified.sum() >= len(left)  # every borderline pair decided by a kept verification
    return {"seconds": round(seconds, 2), "kept_pairs": len(left), "groups": len(groups),
            "kept_file_mb": round(kept.path.stat().st_size / 2**20, 1)}


def borderline_pairs(decided, low_end: float | None = None) -> tuple[list[int], list[int]]:
    """The pairs `duplicates` verifies (``Decider.borderline``; ``low_end``: those at or above this cheap
    probability instead), each in the order it verifies them (``simsearch.verify.orient``)."""
    d = decided.decisions
    if low_end is None:
        border = dup.Decider("copy").borderline(d.pairs, d.cheap)
    else:
        border = np.flatnonzero((d.cheap >= low_end) & ~d.pairs.exact)
    left, right, _ = orient(d.pairs.left[border].tolist(), d.pairs.right[border].tolist(), decided.collection.sha256)
    return left, right


def narrower_bands(decided, run: dict, cost: dict) -> list[dict]:
    """The first run's projected time with the band's low end at each of NARROWER_LOW_ENDS instead of the
    calibrated one (``calibrate.py`` reports the pair F1 each would score)."""
    out = []
    for low in NARROWER_LOW_ENDS:
        left, right = borderline_pairs(decided, low)
        computations = keypoint_plan(left, right)["capped"]["computations"]
        verifying = computations * cost.get("seconds_per_image", 0.0) + len(left) * cost.get("seconds_per_pair", 0.0)
        out.append({"low_end": low, "borderline_pairs": len(left), "keypoint_computations": computations,
                    "projected_total_seconds": round(run["seconds_to_decide"] + run["seconds_to_group"] + verifying,
                                                     1)})
    return out


def verification_cost() -> dict:
    """Seconds per image (decoding and keypoints) and per pair (matching and RANSAC) on real photos:
    the dups set's borderline pairs, on every core, as `duplicates` runs them (one descriptor search
    per left image)."""
    if not (DUPS / "images").is_dir():
        return {"skipped": f"{DUPS} is absent"}
    tmp = Path(tempfile.mkdtemp())
    try:
        idx = simsearch.open_index(tmp / "ix", create=True)
        idx.add([DUPS / "images"], workers=2, embed=MODEL)
        decided = dup.decide(idx._reads, "copy", verify=False)
        left, right = borderline_pairs(decided)
        rows = sorted(set(left) | set(right))
        paths = {r: decided.row_record(r).abspath for r in rows}
        idx.close()
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            t0 = time.perf_counter()
            seconds = set(right)  # as `duplicates` does: only the second image of a pair is mirrored too
            points = dict(zip(rows, pool.map(lambda r: keypoints(paths[r], mirrored=r in seconds), rows)))
            t1 = time.perf_counter()
            verify_pairs(points, left, right, pool.map)
            t2 = time.perf_counter()
    finally:
        shutil.rmtree(tmp)
    return {"images": len(rows), "pairs": len(left), "seconds_per_image": round((t1 - t0) / len(rows), 4),
            "seconds_per_pair": round((t2 - t1) / len(left), 4)}


def peer(vectors: np.ndarray) -> dict:
    """Candidate search over 20k vectors: brute-force FAISS against simsearch's (exact below 20k: same kind)."""
    sub = np.ascontiguousarray(vectors[:20_000])
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(sub.shape[1])
    flat.add(sub)
    flat.search(sub, NEIGHBOURS + 1)
    brute = time.perf_counter() - t0
    from simsearch.pairs import _knn_index  # noqa: PLC0415

    t0 = time.perf_counter()
    ivf = _knn_index(np.ascontiguousarray(np.vstack([sub, sub[:1]])), faiss)  # 20,001: the IVF path
    _, found_ivf = ivf.search(sub, NEIGHBOURS + 1)
    ours = time.perf_counter() - t0
    _, found_flat = flat.search(sub[:2000], 2)
    recall = float(np.mean([found_flat[q, 1] in found_ivf[q] for q in range(2000)]))
    return {"vectors": 20_000, "brute_force_seconds": round(brute, 2), "simsearch_ivf_seconds": round(ours, 2),
            "speedup": round(brute / ours, 2), "nearest_neighbour_recall": round(recall, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    opts = parser.parse_args()
    vectors, codes = planted(opts.n)
    tmp = Path(tempfile.mkdtemp())
    try:
        t0 = time.perf_counter()
        idx = build_index(tmp / "ix", vectors, codes)
        built = time.perf_counter() - t0
        run, decided = timed_run(idx)
        rerun = rerun_with_kept(idx, decided)
        idx.close()
        cost = verification_cost()
        narrower = narrower_bands(decided, run, cost)
    finally:
        shutil.rmtree(tmp)
    # keypoints as verification's plan computes them: an image dropped under the cap and needed again is decoded again
    verifying = (run["keypoint_plan"]["capped"]["computations"] * cost.get("seconds_per_image", 0.0)
                 + run["borderline_pairs"] * cost.get("seconds_per_pair", 0.0))
    projected = run["seconds_to_decide"] + run["seconds_to_group"] + verifying
    write("duplicates_scale", {
        "n": opts.n, "index_build_seconds": round(built, 1), "run": run, "verification": cost,
        "projected_verification_seconds": round(verifying, 1), "projected_total_seconds": round(projected, 1),
        "second_run_with_kept_verifications": rerun, "narrower_bands": narrower, "target_seconds": 120,
        "peer_candidate_search": peer(vectors), "peak_rss_mb": round(peak_rss_mb()),
    })


if __name__ == "__main__":
    main()
