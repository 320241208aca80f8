"""k-medoids clustering: time, peak memory and total distance (the k-medoids loss) on 4k (every
image: the exact scheme), 10k, 100k and 1M synthetic 1280-d vectors (each run in its own
process), and quality on ../shared/data/dups: adjusted Rand index of the clusters against the
same-scene groups, beside scikit-learn's k-means on the same EfficientNet-Lite0 vectors.

Each is run with both solvers: ``pam`` (built in, Apache-2.0, the default) and the peer,
``kmedoids`` (the GPL-3.0 FasterPAM package; ``make bench`` installs it), and the ratios are reported.

Usage: python benchmarks/clustering.py [--sizes 4000 10000 100000 1000000] [--k 50]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import DUPS, write

CHILD = r"""
import sys, time, json, resource, tracemalloc
sys.path.insert(0, sys.argv[1])
from ann import make_data
from simsearch.cluster import cluster
x, _ = make_data(int(sys.argv[2]), 1)
tracemalloc.start()  # numpy arrays made while clustering, beyond the input vectors
t = time.perf_counter()
result = cluster(x, "embedding", int(sys.argv[3]), solver=sys.argv[4])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": round(seconds, 2), "scheme": result.scheme, "loss": round(result.loss, 2),
                  "mean_distance": round(float(result.distances.mean()), 4),
                  "input_mb": round(x.nbytes / 2**20),
                  "clustering_peak_extra_mb": round(tracemalloc.get_traced_memory()[1] / 2**20),
                  "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def scale(sizes: list[int], k: int, solvers: list[str]) -> list[dict]:
    here = str(Path(__file__).resolve().parent)
    runs = []
    for n in sizes:
        run = {"vectors": n, "k": k}
        for solver in solvers:
            out = subprocess.run([sys.executable, "-c", CHILD, here, str(n), str(k), solver], check=True,
                                 capture_output=True, text=True).stdout
            run[solver] = json.loads(out.strip().splitlines()[-1])
        if "kmedoids" in run:
            run["pam_time_ratio"] = round(run["pam"]["seconds"] / max(run["kmedoids"]["seconds"], 1e-3), 2)
            run["pam_loss_ratio"] = round(run["pam"]["loss"] / run["kmedoids"]["loss"], 4)
        runs.append(run)
        print(run, flush=True)
    return runs


def solvers() -> list[str]:
    try:
        import kmedoids  # noqa: F401
    except ImportError:
        print("the kmedoids peer is not installed (make bench installs it): pam alone")
        return ["pam"]
    return ["pam", "kmedoids"]


def quality(solver_names: list[str]) -> dict | None:
    if not (DUPS / "images").is_dir():
        print(f"quality SKIPPED: {DUPS} is absent")
        return None
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    import simsearch
    from simsearch.cluster import cluster
    from simsearch.evaluate import read_exclude

    truth = json.loads((DUPS / "ground_truth_same_scene.json").read_text())
    exclude = read_exclude(str(DUPS / "unlabeled_exclude.txt"))
    group, labels = {}, {}
    for path in sorted(truth):  # same-scene groups are transitively closed: name each by its first member
        if path not in exclude:
            labels[path] = group.setdefault(min([path, *truth[path]]), len(group))
    tmp = Path(tempfile.mkdtemp())
    try:
        idx = simsearch.open_index(tmp / "ix", create=True)
        idx.add([DUPS / "images"], embed="efficientnet_lite0")
        paths = {r.id: r.path for r in idx.images()}
        ids, vectors = idx.vectors("efficientnet_lite0")
        idx.close()
    finally:
        shutil.rmtree(tmp)
    keep = [n for n, i in enumerate(ids) if paths[i] in labels]
    x, y = vectors[keep], np.array([labels[paths[ids[n]]] for n in keep])
    k = len(set(y.tolist()))
    out = {"images": len(x), "groups_k": k}
    for solver in solver_names:
        found = cluster(x, "embedding", k, solver=solver)
        out[f"{solver}_ari"] = round(adjusted_rand_score(y, found.labels), 4)
        out[f"{solver}_loss"] = round(found.loss, 3)
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
    out["sklearn_kmeans_ari"] = round(adjusted_rand_score(y, kmeans.labels_), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--k", type=int, default=50)
    args = ap.parse_args()
    write("clustering", {
        "data": "scale: synthetic 1280-d unit vectors as in ann.py (seed 0); quality: shared/data/dups, "
                "same-scene groups (unlabeled frames left out), EfficientNet-Lite0 vectors, k = number of groups",
        "scale": scale(args.sizes, args.k, solvers()),
        "quality": quality(solvers()),
    })


if __name__ == "__main__":
    main()
