"""Duplicate models side by side on ``quality.py``'s collections, in seconds once they are indexed.

The full check of a refit (``calibrate.py``) is ``quality.py``, 20 minutes, with the peers, fresh indexes and every
pair verified again. While a change to the models is tried, this scores each model file given (default: the
shipped one) on the same collections, from indexes kept in ``--cache`` (made by its first run, about 15 minutes:
each collection indexed with embeddings and with hashes only). Verifications are kept with the indexes, so a model
of the same verification settings scores without decoding an image; a change to how pairs are verified verifies
them again on its first run. Each model decides at its own cut, level copy (scene for the same-scene truths), as
``quality.py``'s "simsearch (default)" rows do, which it reproduces for the shipped model.

Usage: python benchmarks/compare_models.py [MODEL.json ...] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import require_dups, write
from quality import row, scored_collections

import simsearch
from simsearch import decide
from simsearch.evaluate import evaluate

DEFAULT_CACHE = Path("/tmp/simsearch-compare-models")


def indexes(cache: Path, collections: dict) -> dict[tuple[Path, bool], Path]:
    """An index folder per (images, with embeddings), made where the cache lacks it."""
    folders = {}
    for images in sorted({c[0] for c in collections.values()}):
        where = images.parent  # a collection's folder (seed0/val, families), or dups
        name = "_".join(where.relative_to(cache / "collections").parts) if where.is_relative_to(cache) else where.name
        for embed in (True, False):
            folder = cache / "indexes" / (name + ("" if embed else "_hashes"))
            if not (folder / "done").exists():
                shutil.rmtree(folder, ignore_errors=True)
                with simsearch.open_index(folder, create=True) as idx:
                    idx.add([images], workers=2, embed="efficientnet_lite0" if embed else None)
                (folder / "done").touch()
            folders[images, embed] = folder
    return folders


def scores(model: dict, collections: dict, folders: dict) -> dict:
    """Each collection's default decision under ``model``, with embeddings and with hashes only."""
    decide.model_data = lambda: model  # what every decision reads its models and cuts from
    out = {}
    for name, (images, truth, exclude, level) in collections.items():
        out[name] = {}
        for embed, label in ((True, "simsearch (default)"), (False, "simsearch, hashes only (default)")):
            with simsearch.open_index(folders[images, embed]) as idx:
                found = evaluate(idx, truth, exclude=exclude, level=level, methods=["auto"])
            out[name][label] = row(next(s for s in found if s.default))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model files (default: the shipped one)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the collections and indexes are kept")
    opts = parser.parse_args()
    dups = require_dups()
    generated = opts.cache / "collections"
    made = (generated / "done").exists()
    if not made:
        shutil.rmtree(generated, ignore_errors=True)  # a first run cut short
    collections = scored_collections(dups, generated, make=not made)
    (generated / "done").touch()
    folders = indexes(opts.cache, collections)
    shipped = decide.model_data()
    models = {path: json.loads(Path(path).read_text()) for path in opts.models} or {"shipped": shipped}
    try:
        results = {name: scores(model, collections, folders) for name, model in models.items()}
    except KeyError as exc:  # an input that ``decide.inputs`` does not make
        raise SystemExit(f"a model needs the input {exc}, which this version of simsearch does not compute") from None
    for name, table in results.items():
        print(f"{name:50s} {'with embeddings':34s} hashes only")
        for collection, rows in table.items():
            print(f"  {collection:48s}", "   ".join(f"F1 {r['f1']:.4f} (P {r['precision']:.4f} R {r['recall']:.4f})"
                                                for r in rows.values()))
    write("compare_models", {"cache": str(opts.cache), "models": results})


if __name__ == "__main__":
    main()
