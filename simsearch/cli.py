"""The ``simsearch`` command line: each command opens the index, makes one library call
and formats the result. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

import click

from .errors import SimsearchError, SimsearchWarning
from .names import (
    ANN_KINDS,
    BACKENDS,
    DEFAULT_EMBEDDER,
    DEFAULT_INDEX_DIR,
    DUPLICATE_METHODS,
    LEVELS,
    MAX_SEED,
    SEARCH_METHODS,
)


def index_option(fn):
    return click.option(
        "--index", "index_dir", type=click.Path(file_okay=False), default=None,
        help=f"Index directory (default: $SIMSEARCH_INDEX or ./{DEFAULT_INDEX_DIR}).",
    )(click.option("--db", default=None, envvar="SIMSEARCH_DB", show_envvar=True,
                   help="SQLAlchemy URL for the metadata, e.g. postgresql://user@host/db (default: SQLite in "
                        "the index); the environment variable keeps a password off the command line.")(fn))


def format_option(fn):
    return click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
                        show_default=True, help="Output format.")(fn)


def model_options(fn):
    """How a query or a run encodes images: weights file, backend, device."""
    fn = click.option("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if present).")(fn)
    fn = click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                      help="onnx: ONNX Runtime on CPU; torch: torch (fp16 on a GPU); auto: GPU torch, else onnx.")(fn)
    return click.option("--weights", type=click.Path(dir_okay=False), default=None,
                        help="Weights file for the embedder (default: its package or the local cache).")(fn)


def friendly(fn):
    """Library errors become one-line CLI errors, never tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SimsearchError as exc:
            raise click.ClickException(exc.cli_message or str(exc)) from None
        except BrokenPipeError:  # output piped into `head` and the like: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None

    return wrapper


def _indexed_roots(index_dir, db) -> list[str]:
    """The folders an existing index was built from; none where there is no index yet."""
    from .errors import IndexNotFound  # noqa: PLC0415

    try:
        with _open(index_dir, db) as idx:
            return idx.root_paths()
    except IndexNotFound:
        return []


def _note_gone_roots(idx) -> None:
    """A note on stderr for each indexed folder that no longer exists while images from it are still listed
    (a folder moved or deleted: every image in it would pair with its new copy as a duplicate)."""
    for path, images in idx.gone_roots():
        click.echo(f"note: {path} no longer exists, but {images} images indexed from it are still listed: "
                   f"run simsearch index {shlex.quote(path)} to mark them removed", err=True)


def _open(index_dir, db, create=False):
    from .index import open_index  # noqa: PLC0415 - NumPy and the ORM load only for a command that runs

    return open_index(index_dir, db=db, create=create)


def echo_json(value) -> None:
    """Print ``value`` as indented JSON, written as it is encoded (a duplicate map of 100,000 images is tens of MB:
    never held whole as text)."""
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit(rows: list[dict], fmt: str, columns: list[str] | None = None) -> None:
    """Print rows as an aligned table, JSON or CSV."""
    if fmt == "json":
        echo_json(rows)
        return
    columns = columns or (list(rows[0]) if rows else [])
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        click.echo("(no results)")
        return
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cell(value) -> str:
    """A table cell on one line: control characters (a newline in a file name) escaped as Python writes them;
    a value that does not apply (None) as a dash."""
    text = "-" if value is None else str(value)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@click.group()
@click.version_option(package_name="simsearch")
def main():
    """Image similarity and duplicate search with a persistent index."""
    warnings.simplefilter("always", SimsearchWarning)
    warnings.showwarning = _note


_python_showwarning = warnings.showwarning


def _note(message, category, filename, lineno, file=None, line=None) -> None:
    """simsearch's own warnings as one line on stderr; any other as Python shows it."""
    if issubclass(category, SimsearchWarning):
        click.echo(f"note: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--from-file", "file_list", type=click.Path(dir_okay=False), help="Read paths, one a line, from this file.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: every core).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Images per transaction.")
@click.option("--full-decode", is_flag=True, default=None, help="Decode JPEGs at full size (slower; fixed per index).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help="Refuse images with more pixels than this.")
@click.option("--all-files", is_flag=True, help="Try every file, not only those with image extensions.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--embed", is_flag=False, flag_value=DEFAULT_EMBEDDER, default=None, metavar="[MODEL]",
              help=f"Also compute embeddings, in the same pass (MODEL default: {DEFAULT_EMBEDDER}; "
                   "see simsearch models list, or timm:ARCH / torchvision:ARCH).")
@click.option("--embed-batch", type=click.IntRange(min=1), default=None,
              help="Images per inference batch (default: 8 on CPU, 256 on GPU).")
@click.option("--ann", type=click.Choice(ANN_KINDS), default=None,
              help="Vector index: flat (exact), ivf, or auto (exact below 100k vectors). Kept in the index.")
@click.option("--tag", "tagger", default=None, metavar="TAGGER",
              help="Also tag objects, in the same pass: yolov3-tiny, imagenet, or torchvision:ARCH (a detector).")
@click.option("--tag-weights", type=click.Path(dir_okay=False), default=None,
              help="Weights file for the tagger (default: the model cache or the local torch cache).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Tags: keep detections this sure.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine's worker processes; ray: a Ray cluster (pip install 'simsearch[ray]').")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Ray: join the cluster at ADDR (e.g. 10.0.0.5:6379); default: start a local Ray instance.")
@model_options
@index_option
@friendly
def index(paths, file_list, workers, batch_size, full_decode, max_pixels, all_files, progress, embed, embed_batch,
          ann, tagger, tag_weights, min_score, engine, ray_address, weights, backend, device, index_dir, db):
    """Index images under PATHS (folders recursively, or files); re-running updates the index."""
    from simsearch.indexer.pipeline import check_paths  # noqa: PLC0415 - the write side loads only to index
    from simsearch.indexer.scan import read_file_list  # noqa: PLC0415

    if any(not os.path.lexists(p) for p in paths):  # before the index is created: a typo leaves nothing behind
        check_paths(list(paths), _indexed_roots(index_dir, db))
    paths = list(paths) + (read_file_list(file_list) if file_list else [])  # a listed file that is gone: a failure
    if not paths:
        raise click.UsageError("give at least one PATH or --from-file LIST")
    if ray_address and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    options = {"workers": workers, "batch_size": batch_size, "full_decode": full_decode, "all_files": all_files,
               "progress": sys.stderr.isatty() if progress is None else progress, "engine": engine,
               "ray_address": ray_address, "missing_ok": bool(file_list)}
    if max_pixels:
        options["max_pixels"] = max_pixels
    if embed or tagger:
        options.update(backend=backend, device=device)
    if embed:
        options.update(embed=embed, weights=weights, embed_batch=embed_batch)
    if tagger:
        options.update(tag=tagger, tag_weights=tag_weights, min_score=min_score)
    with _open(index_dir, db, create=True) as idx:
        if ann:
            idx.set_ann(ann)
        summary = idx.add(paths, **options)
        click.echo(summary.line())
        _note_gone_roots(idx)
    for stage, counts in summary.nodes.items():
        click.echo(f"ray {stage}: files per node: " + ", ".join(f"{n[:8]} {c}" for n, c in sorted(counts.items())))
    if "ray start" in summary.seconds:  # not where nothing was to be read: the run then starts no cluster
        click.echo(f"ray: {'joined ' + ray_address if ray_address else 'started a local instance'} in "
                   f"{summary.seconds['ray start']:.1f} s")
    if summary.fallback:
        click.echo(f"ray: {summary.fallback} files the cluster could not finish were finished locally")


@main.command()
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--from-file", "query_list", type=click.Path(dir_okay=False),
              help="Read query images, one path a line, from this file (with IMAGES: after them).")
@click.option("--by", type=click.Choice(SEARCH_METHODS), default="auto", show_default=True,
              help="embedding (cosine), a hash (Hamming), or auto: embedding if the index has them, else phash.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Number of neighbours.")
@click.option("--max-distance", type=int, default=None, help="Hashes: only neighbours within this Hamming distance.")
@click.option("--min-similarity", type=float, default=None, help="Embeddings: only neighbours this similar (cosine).")
@click.option("--model", default=None, help="Embedder whose vectors to search (default: the index's).")
@click.option("--rotations", is_flag=True, help="Embeddings: also match the query's 8 rotations and flips.")
@click.option("--tag", "tags", multiple=True, help="Only images tagged with this label (repeat: all of them).")
@click.option("--min-score", type=float, default=0.25, show_default=True, help="Tags: the least detection score.")
@click.option("--tagger", default=None, help="Tags: only those this tagger found (default: any).")
@model_options
@index_option
@format_option
@friendly
def search(images, query_list, by, k, max_distance, min_similarity, model, rotations, tags, min_score, tagger, weights,
           backend, device, index_dir, db, fmt):
    """Nearest indexed images to each of IMAGES (which need not be indexed); without IMAGES, the images
    with --tag. Several queries (or --from-file) give one result block per query."""
    from simsearch.indexer.scan import read_file_list  # noqa: PLC0415

    queries = list(images) + (read_file_list(query_list) if query_list else [])
    if not queries:
        if query_list:
            raise click.ClickException(f"no query paths in {query_list}")
        if not tags:
            raise click.UsageError("give an IMAGE, --from-file LIST, or --tag LABEL to list tagged images")
        with _open(index_dir, db) as idx:
            found = idx.with_tags(list(tags), min_score=min_score, tagger=tagger)
        emit([{"path": r.path, "width": r.width, "height": r.height} for r in found], fmt, ["path", "width", "height"])
        return
    with _open(index_dir, db) as idx:
        results = idx.search_many(queries, by=by, k=k, max_distance=max_distance, min_similarity=min_similarity,
                                  model=model, rotations=rotations, tags=list(tags), min_score=min_score,
                                  tagger=tagger, weights=weights, backend=backend, device=device)
    score = "similarity" if idx.search_method(by) == "embedding" else "distance"
    _emit_answers(results, fmt, len(queries) == 1 and not query_list, "matches",
                  lambda r: [{"rank": n, score: getattr(m, score), "path": m.image.path}
                             for n, m in enumerate(r.matches, 1)], ["rank", score, "path"])


def _emit_answers(results, fmt: str, single: bool, key: str, rows, columns: list[str], as_json=None) -> None:
    """The answers to image queries (``rows``: a result's table rows; ``as_json``: its JSON, by default its rows).
    One query alone is answered by its rows, its error being the command's. Several get one block each: json,
    a list of {query, KEY | error}; csv, rows with a query column; table, a heading line per query; and the
    command fails after them where any query could not be read."""
    as_json = as_json or rows
    if single:
        [result] = results
        if result.error is not None:
            raise click.ClickException(f"{result.query}: {result.error.cli_message or result.error}")
        echo_json(as_json(result)) if fmt == "json" else emit(rows(result), fmt, columns)
        return
    if fmt == "json":
        echo_json([{"query": str(r.query), "error": str(r.error)} if r.error is not None else
                   {"query": str(r.query), key: as_json(r)} for r in results])
    elif fmt == "csv":
        emit([{"query": str(r.query), "error": str(r.error) if r.error is not None else "", **row}
              for r in results for row in (rows(r) or [{}])], fmt, ["query", *columns, "error"])
    else:
        for n, r in enumerate(results):
            click.echo(("\n" if n else "") + f"== {r.query}")
            click.echo(f"error: {r.error}") if r.error is not None else emit(rows(r), fmt, columns)
    failed = sum(r.error is not None for r in results)
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} queries could not be read (see their blocks)")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--token", default=None, help="The token write actions need (default: a new random one, printed).")
@click.option("--move-to", type=click.Path(file_okay=False), default=None,
              help="Where moved files and their manifests go (default: INDEX/aside).")
@index_option
@friendly
def serve(host, port, token, move_to, index_dir, db):
    """Serve the index: a JSON API (/api, documented at /openapi.json) and a web app at /."""
    from .serve import require_serve, run_server  # noqa: PLC0415

    require_serve()
    with _open(index_dir, db) as idx:
        run_server(idx, host, port, token, Path(move_to) if move_to else None, echo=click.echo)


def _a_probability(ctx, param, value: float | None) -> float | None:
    """A cut in (0, 1]; click's FloatRange lets nan through (every comparison with it is false)."""
    if value is not None and not 0.0 < value <= 1.0:
        raise click.BadParameter(f"{value} is not a probability in (0, 1]")
    return value


def level_options(fn):
    """How duplicates are decided: the level and the probability cut."""
    fn = click.option("--cut", type=float, callback=_a_probability, default=None,
                      help="auto: the least probability for a pair to be duplicates (default: the level's "
                           "calibrated cut).")(fn)
    return click.option("--level", type=click.Choice(LEVELS), default="copy", show_default=True,
                        help="auto: copy (the same picture after edits) or scene (also other shots of the "
                             "same scene).")(fn)


@main.command()
@click.option("--by", type=click.Choice(DUPLICATE_METHODS), default="auto", show_default=True,
              help="auto: calibrated decisions at --level; or one single-feature rule (exact, embedding, a hash).")
@level_options
@click.option("--max-distance", type=int, default=None, help="Hamming distance for hash methods (default per method).")
@click.option("--min-similarity", type=float, default=None, help="Cosine similarity for --by embedding (default 0.98).")
@click.option("--model", default=None, help="Embedder whose vectors to use (default: the index's).")
@click.option("--explain", is_flag=True, help="auto, json: each group with its keeper's pair with every member "
                                              "(score, inputs, transform).")
@click.option("--move-to", type=click.Path(file_okay=False), default=None,
              help="Keep the first of each group (largest, then biggest file, then oldest) and move the rest here.")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="Where --move-to records the moves (default: DIR/simsearch-moves.jsonl).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars while borderline pairs are verified (default: when stderr is a terminal).")
@index_option
@format_option
@friendly
def duplicates(by, level, cut, max_distance, min_similarity, model, explain, move_to, manifest, progress, index_dir,
               db, fmt):
    """Duplicate groups, the image to keep first. JSON is imagededup's {path: [duplicates]} map
    (with --explain: the groups with each pair's decision)."""
    if explain and (by != "auto" or fmt != "json"):
        raise click.UsageError("--explain goes with --by auto and --format json")
    progress = sys.stderr.isatty() if progress is None else progress
    options = {"by": by, "level": level, "cut": cut, "max_distance": max_distance, "min_similarity": min_similarity,
               "model": model, "progress": progress}
    with _open(index_dir, db) as idx:
        _note_gone_roots(idx)
        if by == "auto" and idx.search_method("auto") != "embedding":
            click.echo("note: this index has no embeddings, so copies that were cropped, framed, captioned or tilted "
                       "are not found: index with --embed to find them", err=True)
        if move_to:
            manifest = manifest or os.path.join(move_to, "simsearch-moves.jsonl")
            done = idx.move_duplicates(move_to, manifest, **options)
            where = f" --index {idx.directory}" + (" --db URL" if db else "")
            click.echo(f"moved {done.moved} files from {done.groups} groups; undo with: simsearch undo {manifest}{where}")
            _tell_skipped(done.skipped)
            return
        if explain:
            groups = idx.duplicate_pairs(level=level, cut=cut, model=model, progress=progress)
            echo_json([{"keep": g[0].a.path, "pairs": [p.as_dict() for p in g]} for g in groups])
            return
        if fmt == "json":
            echo_json(idx.duplicate_map(**options))
            return
        groups = idx.duplicates(**options)
    rows = [{"group": n, "keep": "*" if i == 0 else "", "path": r.path, "width": r.width, "height": r.height,
             "picture": "{}x{}".format(*r.picture), "bytes": r.size}
            for n, g in enumerate(groups, 1) for i, r in enumerate(g)]
    emit(rows, fmt, ["group", "keep", "path", "width", "height", "picture", "bytes"])


def _tell_skipped(skipped: list[tuple[str, str]], shown: int = 5) -> None:
    """Say on stderr which files a move left in place, and why (the first few)."""
    if not skipped:
        return
    click.echo(f"left {len(skipped)} file(s) in place:", err=True)
    for path, why in skipped[:shown]:
        click.echo(f"  {path}: {why}", err=True)
    if len(skipped) > shown:
        click.echo(f"  and {len(skipped) - shown} more", err=True)
    if any("since it was indexed" in why for _, why in skipped):
        click.echo("run simsearch index over a folder that changed before moving its duplicates", err=True)


@main.command()
@click.argument("a")
@click.argument("b")
@level_options
@click.option("--model", default=None, help="Embedder whose vectors to use (default: the index's).")
@index_option
@format_option
@friendly
def explain(a, b, level, cut, model, index_dir, db, fmt):
    """Why indexed images A and B are, or are not, duplicates: the inputs, the probability, the
    decision, and the transform from B to A where local features verified it."""
    with _open(index_dir, db) as idx:
        pair = idx.explain(a, b, level=level, cut=cut, model=model).as_dict()
    if fmt == "json":
        echo_json(pair)
        return
    rows = [{"field": k, "value": v} for k, v in pair.items() if k not in ("inputs", "transform")]
    rows += [{"field": f"input {k}", "value": v} for k, v in pair["inputs"].items()]
    rows += [{"field": f"transform {k}", "value": v} for k, v in (pair["transform"] or {}).items()]
    emit(rows, fmt, ["field", "value"])


@main.command()
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--from-file", "query_list", type=click.Path(dir_okay=False),
              help="Read query images, one path a line, from this file (with IMAGES: after them).")
@level_options
@click.option("--model", default=None, help="Embedder whose vectors to use (default: the index's).")
@model_options
@index_option
@format_option
@friendly
def match(images, query_list, level, cut, model, weights, backend, device, index_dir, db, fmt):
    """Indexed images that are duplicates of each of IMAGES (new photos, which need not be indexed), decided
    as `duplicates` would decide each pair had the image been indexed, most probable first."""
    from simsearch.indexer.scan import read_file_list  # noqa: PLC0415

    queries = list(images) + (read_file_list(query_list) if query_list else [])
    if not queries:
        raise click.UsageError(f"give an IMAGE or --from-file LIST{' with paths in it' if query_list else ''}")
    with _open(index_dir, db) as idx:
        results = idx.duplicates_of(queries, level=level, cut=cut, model=model, weights=weights, backend=backend,
                                    device=device)
    _emit_answers(results, fmt, len(queries) == 1 and not query_list, "duplicates",
                  lambda r: [{"rank": n, "score": round(p.score, 4), "path": p.a.path, "decided_by": p.decided_by}
                             for n, p in enumerate(r.duplicates, 1)], ["rank", "score", "path", "decided_by"],
                  lambda r: [p.as_dict() for p in r.duplicates])


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@index_option
@friendly
def undo(manifest, index_dir, db):
    """Move back the files a MANIFEST written by duplicates --move-to records, and mark them indexed
    again. Every line is checked first (SHA-256, paths, that this index moved the file); one bad
    line refuses the whole manifest and nothing moves."""
    with _open(index_dir, db) as idx:
        moved, already = idx.undo(manifest)
    click.echo(f"restored {moved} files" + (f" ({already} were back already)" if already else ""))


@main.command()
@click.option("--ground-truth", required=True, type=click.Path(dir_okay=False), help="imagededup-format map.")
@click.option("--exclude", type=click.Path(dir_okay=False), default=None, help="Paths to leave out, one a line.")
@click.option("--by", "methods", multiple=True, type=click.Choice(DUPLICATE_METHODS),
              help="Methods to score (default: every method the index supports).")
@click.option("--level", type=click.Choice(LEVELS), default="copy", show_default=True,
              help="auto: the level whose decisions are scored.")
@click.option("--sweep/--no-sweep", default=True, show_default=True,
              help="Score cuts, distances 0-20 and similarities 0.80-0.995, not only the default and the best.")
@index_option
@format_option
@friendly
def evaluate(ground_truth, exclude, methods, level, sweep, index_dir, db, fmt):
    """Pair-level precision, recall and F1 of duplicate groups against GROUND_TRUTH, and for auto the
    average precision of its pair scores (threshold-free)."""
    from .evaluate import best  # noqa: PLC0415
    from .evaluate import evaluate as run_eval

    with _open(index_dir, db) as idx:
        scores = run_eval(idx, ground_truth, methods=methods or None, exclude=exclude, level=level)
    top = {id(s) for s in best(scores).values()}
    chosen = scores if sweep else [s for s in scores if id(s) in top or s.default]
    emit([{"method": s.method, "level": s.level or "", "cut": "" if s.cut is None else s.cut,
           "max_distance": "" if s.max_distance is None else s.max_distance,
           "min_similarity": "" if s.min_similarity is None else s.min_similarity,
           "precision": round(s.precision, 4), "recall": round(s.recall, 4), "f1": round(s.f1, 4),
           "average_precision": "" if s.average_precision is None else round(s.average_precision, 4),
           "default": "*" if s.default else "", "best": "*" if id(s) in top else "",
           "predicted_pairs": s.predicted_pairs, "true_pairs": s.true_pairs} for s in chosen], fmt,
         ["method", "level", "cut", "max_distance", "min_similarity", "precision", "recall", "f1",
          "average_precision", "default", "best", "predicted_pairs", "true_pairs"])


@main.command()
@click.option("--failures", "show_failures", is_flag=True, help="List each failure too.")
@index_option
@format_option
@friendly
def stats(show_failures, index_dir, db, fmt):
    """Counts of images, failures, removed files, hashes, and size on disk."""
    with _open(index_dir, db) as idx:
        info = idx.stats()
        failures = idx.failures() if show_failures else []
    if show_failures:
        emit(failures, fmt, ["path", "kind", "message"])
        return
    if fmt == "json":
        echo_json(info)
        return
    info["failure_kinds"] = ", ".join(f"{k} {v}" for k, v in sorted(info["failure_kinds"].items())) or "-"
    emit([{"field": k, "value": v} for k, v in info.items()], fmt, ["field", "value"])


@main.command()
@click.option("--k", "k", type=click.IntRange(min=1), default=None, help="Number of clusters.")
@click.option("--auto", is_flag=True, help="Choose k in 2-20 by silhouette (scores are printed).")
@click.option("--by", type=click.Choice(("embedding", "phash", "dhash", "whash", "ahash")), default="embedding",
              show_default=True, help="Cosine distance of embeddings, or Hamming distance of a hash.")
@click.option("--model", default=None, help="Embedder whose vectors to cluster (default: the index's).")
@click.option("--name", default=None, help="Name of the run (default: run-DATE-TIME).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Random seed (initial medoids, samples).")
@click.option("--solver", type=click.Choice(("pam", "kmedoids")), default="pam", show_default=True,
              help="pam: built in (Apache-2.0); kmedoids: the GPL-3.0 kmedoids package (simsearch[kmedoids]).")
@index_option
@format_option
@friendly
def cluster(k, auto, by, model, name, seed, solver, index_dir, db, fmt):
    """k-medoids clustering of the indexed images; the run is stored in the index."""
    if auto == (k is not None):
        raise click.UsageError("give either --k K or --auto")
    from .clusterings import scheme_text  # noqa: PLC0415 - the CLI loads the library on use

    with _open(index_dir, db) as idx:
        run = idx.cluster(k, auto=auto, by=by, model=model, name=name, seed=seed, solver=solver)
        rows = _cluster_rows(idx.clusters(run["name"]))
    scores = ", ".join(f"k={k_}: {v:.3f}" for k_, v in run["silhouette_by_k"].items())
    scheme = scheme_text(run)
    click.echo(f"clustering {run['name']}: {run['images']} images, k={run['k']}, {scheme}"
               + (f"; silhouette {scores}" if scores else ""), err=fmt != "table")
    emit(rows, fmt, ["cluster", "size", "mean_distance", "medoid"])


@main.command()
@click.argument("run", required=False)
@click.option("--cluster", "number", type=int, default=None, help="List the images of this cluster of RUN.")
@index_option
@format_option
@friendly
def clusters(run, number, index_dir, db, fmt):
    """Stored clusterings; with RUN, its clusters; with --cluster N, that cluster's images."""
    with _open(index_dir, db) as idx:
        if run is None:
            emit(idx.clusterings(), fmt, ["name", "by", "model", "k", "scheme", "solver", "images", "silhouette",
                                          "created"])
        elif number is None:
            emit(_cluster_rows(idx.clusters(run)), fmt, ["cluster", "size", "mean_distance", "medoid"])
        else:
            members = idx.cluster_members(run, number)
            emit([{"medoid": "*" if m.medoid else "", "distance": m.distance, "path": m.image.path}
                  for m in members], fmt, ["medoid", "distance", "path"])


@main.command()
@click.option("--tagger", default="yolov3-tiny", show_default=True,
              help="yolov3-tiny, imagenet, or torchvision:ARCH (see simsearch models list).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Keep detections this sure.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: every core).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@model_options
@index_option
@friendly
def tag(tagger, min_score, workers, progress, weights, backend, device, index_dir, db):
    """Tag the objects in every indexed image not yet tagged (resumable); tags become searchable.
    (index --tag does the same in the indexing pass.)"""
    with _open(index_dir, db) as idx:
        done = idx.tag(tagger, min_score=min_score, weights=weights, backend=backend, device=device,
                       workers=workers, progress=sys.stderr.isatty() if progress is None else progress)
    click.echo(f"tagged {done} images with {tagger}")


@main.command()
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Count detections this sure.")
@click.option("--tagger", default=None, help="Only this tagger's labels (default: every tagger's).")
@index_option
@format_option
@friendly
def tags(min_score, tagger, index_dir, db, fmt):
    """Images per label, most first."""
    with _open(index_dir, db) as idx:
        emit(idx.tags(min_score=min_score, tagger=tagger), fmt, ["label", "images", "tagger"])


@main.group()
def report():
    """Static HTML pages with thumbnails, opened from the file system."""


@report.command("clusters")
@click.argument("run")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for index.html and thumbs/.")
@index_option
@friendly
def report_clusters(run, out, index_dir, db):
    """A page of clustering RUN: one row per cluster, medoid first, sizes and distances."""
    with _open(index_dir, db) as idx:
        click.echo(f"wrote {idx.report_clusters(run, out)}")


@report.command("duplicates")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for index.html and thumbs/.")
@click.option("--by", type=click.Choice(DUPLICATE_METHODS), default="auto", show_default=True)
@level_options
@click.option("--max-distance", type=int, default=None, help="Hamming distance for hash methods.")
@click.option("--min-similarity", type=float, default=None, help="Cosine similarity for embeddings.")
@index_option
@friendly
def report_duplicates(out, by, level, cut, max_distance, min_similarity, index_dir, db):
    """A page of the duplicate groups: one row per group, the image to keep first, each member with
    its probability and, where verified, the transform."""
    with _open(index_dir, db) as idx:
        path = idx.report_duplicates(out, by=by, level=level, cut=cut, max_distance=max_distance,
                                     min_similarity=min_similarity)
    click.echo(f"wrote {path}")


def _cluster_rows(found: list[dict]) -> list[dict]:
    return [{"cluster": c["cluster"], "size": c["size"], "mean_distance": c["mean_distance"],
             "medoid": c["medoid"].path} for c in found]


from . import cli_models  # noqa: E402, F401 - registers the models and detect commands on main


def run() -> None:
    """The ``simsearch`` command: click's usage errors shortened to one ``Error:`` line, like every
    other error, and so is an error nobody foresaw (``--help`` is unchanged)."""
    try:
        code = main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: one line like every error, the traceback on request
        if os.environ.get("SIMSEARCH_TRACEBACK"):
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {_one_line(str(exc))} (a bug in simsearch: run again "
                   "with SIMSEARCH_TRACEBACK=1 to see where, and report it)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> str:
    """An error on one line: a library's may span several (psycopg's: the error, then a hint)."""
    return " ".join(message.split())


if __name__ == "__main__":
    run()
