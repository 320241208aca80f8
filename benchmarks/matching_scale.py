"""Inventory matching against a large catalogue: the latency of ``Index.duplicates_of`` for one new photo at a
time, as an API loop or the server calls it, on a catalogue of 100k images, in one run:
- the first call (it loads what matching reads of the index: ``simsearch.matching.Catalogue``);
- later calls, one new photo each (the catalogue kept while the index is unchanged);
- peer: the same calls with the catalogue loaded again for each, as every call did before it was kept;
- peer: ``Index.search`` of the same photos (nearest neighbours by FAISS, no decision), what a user would
  run instead of matching;
- the whole ``simsearch match PHOTO`` command, which loads the catalogue for its one call.

The catalogue is generated as in ``duplicates_scale.py`` (seeded vectors shaped like CNN embeddings, random
pHashes, 10 % planted near copies), stored under the real embedder's spec so that real photos can be
asked; its files do not exist. The new photos (the bundled samples, resized) are real but unrelated to it,
so every candidate pair is decided by the cheap model and no file is verified: what is timed is what grows
with the catalogue (loading, candidate search, crowding, decisions), not verification, whose cost per pair
does not depend on the catalogue's size (see ``duplicates_scale.py``).

Usage: python benchmarks/matching_scale.py [--n 100000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, write
from duplicates_scale import MODEL, build_index, planted
from PIL import Image

import simsearch
from simsearch import matching
from simsearch.models import create_embedder


def photos(folder: Path) -> list[Path]:
    """New photos: each bundled sample at two sizes, saved as JPEG."""
    folder.mkdir()
    out = []
    for source in sorted((REPO / "samples" / "images").iterdir()):
        img = Image.open(source).convert("RGB")
        for side in (640, 400):
            img.thumbnail((side, side))
            path = folder / f"{source.stem}_{side}.jpg"
            img.save(path, quality=85)
            out.append(path)
    return out


def timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        vectors, codes = planted(opts.n)
        spec = create_embedder(MODEL).stored_spec()
        build_index(tmp / "ix", vectors, codes, spec).close()
        del vectors, codes
        new = photos(tmp / "new")
        with simsearch.open_index(tmp / "ix") as idx:
            first = timed(lambda: idx.duplicates_of(new[0]))
            kept = [timed(lambda p=p: idx.duplicates_of(p)) for p in new[1:]]
            embedder = idx.embedder(MODEL)
            reloaded = [timed(lambda p=p: matching.duplicates_of(idx._reads, matching.Catalogue(idx._reads, MODEL),
                                                                 [p], embedder=embedder)) for p in new[1:6]]
            idx.search(new[0], k=30)  # its FAISS index is built and kept, as a server keeps it
            searched = [timed(lambda p=p: idx.search(p, k=30)) for p in new[1:]]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simsearch.cli", "match", str(new[1]), "--index", str(tmp / "ix")],
                       check=True, capture_output=True, cwd=REPO)
        command = time.perf_counter() - t0
        median = statistics.median(kept)
        result = {"catalogue_images": opts.n, "new_photos": len(new),
                  "first_call_s": round(first, 2), "later_calls_median_s": round(median, 3),
                  "later_calls_max_s": round(max(kept), 3),
                  "peer_catalogue_loaded_each_call_median_s": round(statistics.median(reloaded), 2),
                  "peer_search_k30_median_s": round(statistics.median(searched), 3),
                  "speedup_over_loading_each_call": round(statistics.median(reloaded) / median, 1),
                  "ratio_to_search": round(median / statistics.median(searched), 2),
                  "match_command_s": round(command, 2)}
        write("matching_scale", result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
