"""The bulk indexing run: scan -> extract (worker processes: decode once, hash, and on
CPU embed and tag) -> models the parent runs (a GPU) -> batched writes.

Every batch, embeddings and tags included, commits in one transaction, so a run killed
at any instant leaves an index that opens; running the same command again
skips what was written (same size and mtime, every feature present) and
finishes the rest, giving the index an uninterrupted run builds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

from sqlalchemy import Engine
from tqdm import tqdm

from simsearch import store
from simsearch.errors import InvalidArgument
from simsearch.imageio import DEFAULT_MAX_PIXELS
from simsearch.schema import FAILED, OK, REMOVED
from simsearch.taggers import check_min_score

from . import write
from .features import ModelJobs, Result, Task, infer
from .scan import Placer, Scan, new_roots, scan_roots
from .workers import extract_all, worker_pool
from .write import KnownFile

ENGINES = ("local", "ray")


@dataclass
class RunSummary:
    """What a run did. ``seconds`` holds time per stage (``embed`` is part of ``extract+write``)."""

    scanned: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    indexed: int = 0
    failed: int = 0
    removed: int = 0
    restored: int = 0
    refreshed: int = 0  # unchanged files decoded again for a missing feature (an embedding, tags)
    reused: int = 0  # files that took the features of identical bytes indexed before (moved, copied), undecoded
    embedded: int = 0
    tagged: int = 0
    skipped: int = 0  # files whose extension is not an image's
    elapsed: float = 0.0  # wall seconds of the whole run
    seconds: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)  # the Ray engine: stage (extract, models) -> node id -> files
    fallback: int = 0  # the Ray engine: files the cluster could not finish, finished by local workers

    def line(self) -> str:
        return (
            f"indexed {self.indexed}, failed {self.failed}, unchanged {self.unchanged}, removed {self.removed}, "
            f"embedded {self.embedded}, tagged {self.tagged} (scanned {self.scanned}: {self.new} new, "
            f"{self.changed} changed, {self.refreshed} completed, {self.reused} taken from identical files; "
            f"{self.skipped} non-image files passed over) in {self.elapsed:.1f} s"
        )


def run(
    db: Engine,
    paths: list[str],
    *,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    batch_size: int = 256,
    full_decode: bool | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    all_files: bool = False,
    progress: bool = False,
    embed: str | None = None,
    weights: str | None = None,
    backend: str = "auto",
    device: str | None = None,
    embed_batch: int | None = None,
    tag: str | None = None,
    tag_weights: str | None = None,
    min_score: float = 0.25,
    missing_ok: bool = False,
) -> RunSummary:
    """Index ``paths`` (folders recursively, or files) into the index database behind ``db``. A path that does
    not exist is refused before anything is written, unless ``missing_ok`` (paths read from a list, some of
    whose files may be gone): then it is recorded as a failure and the run goes on.

    ``engine``: ``local`` (this machine's worker processes) or ``ray`` (a Ray cluster: the one at
    ``ray_address``, else a local instance started for the run; see ``ray_engine``). Either writes the same index.

    ``embed`` names an embedder (``simsearch.models``) whose vectors are computed
    in the same pass; ``weights``, ``backend``, ``device`` and ``embed_batch``
    (default: chosen for the backend) go to ``create_embedder``. ``tag`` names a
    tagger (``simsearch.taggers``, weights from ``tag_weights``) that keeps
    detections scoring ``min_score`` or more, from the same decode.
    """
    if workers is not None and workers < 1:
        raise InvalidArgument(f"workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise InvalidArgument(f"batch size must be at least 1, got {batch_size}")
    check_min_score(min_score)
    if engine not in ENGINES:
        raise InvalidArgument(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    started = time.perf_counter()
    with db.begin() as conn:  # a folder inside an indexed one is scanned under it; one above it absorbs it
        known_roots = write.indexed_roots(conn)
        gone = check_paths(paths, known_roots, missing_ok)  # raised before anything is written
        roots = write.merge_nested_roots(conn, new_roots(paths, known_roots))
    summary = RunSummary()
    full = _decode_mode(db, full_decode)
    scans = scan_roots(paths, all_files=all_files, gone=gone, roots=roots)
    summary.seconds["scan"] = time.perf_counter() - started
    files = sum(len(scan.entries) for scan in scans)
    workers = workers or os.cpu_count() or 1
    model_args = {"embed": embed, "weights": weights, "backend": backend, "device": device, "embed_batch": embed_batch,
                  "tag": tag, "tag_weights": tag_weights, "min_score": min_score}
    options = (full, max_pixels, batch_size, progress)
    if engine == "ray":
        _run_on_ray(db, scans, summary, ray_address, workers, model_args, options)
    else:
        torch_loaded = "torch" in sys.modules  # before the fork: a parent that ran torch leaves OpenMP unusable
        # workers fork before the models start their threads
        with worker_pool(workers, files) as pool:
            models = _make_models(db, **model_args)
            jobs = models.worker_jobs(pool, workers, torch_loaded, weights, tag_weights, embed_batch)
            _run_roots(db, scans, summary, models, lambda tasks: extract_all(tasks, pool, jobs, 2 * batch_size),
                       *options)
    summary.elapsed = time.perf_counter() - started
    return summary


def check_paths(paths: list[str], roots: list[str], missing_ok: bool = False) -> set[str]:
    """The paths that are gone but were indexed as folders (``roots``: a folder moved or deleted): indexed
    again, their files are marked removed. Any other path that does not exist is refused (a typo), unless
    ``missing_ok``."""
    missing = {os.path.abspath(p): p for p in paths if not os.path.lexists(p)}
    gone = set(missing) & set(roots)
    unknown = [p for full, p in missing.items() if full not in gone]
    if unknown and not missing_ok:
        root, _ = Placer(roots).place(os.path.abspath(unknown[0]))
        hint = f" (if it was deleted: index {root} again to mark what was indexed from it removed)" if root else ""
        raise InvalidArgument(f"no such file or folder: {unknown[0]}{hint}")
    return gone


def _run_on_ray(db: Engine, scans: list[Scan], summary: RunSummary, address, workers: int, model_args: dict,
                options: tuple) -> None:
    """The run on a Ray cluster, joined (or a local instance started) only once there are files to read: a run
    that finds nothing new or changed costs no cluster. An address that does not answer fails at once."""
    from .ray_engine import RayStages, check_cluster, ray_cluster  # noqa: PLC0415 - Ray loads only here

    check_cluster(address)
    models = _make_models(db, **model_args)
    started: list[RayStages] = []
    with ExitStack() as stack:

        def results(tasks: list) -> Iterator:
            if not started:
                t0 = time.perf_counter()
                ray = stack.enter_context(ray_cluster(address))
                jobs = models.ray_jobs(ray, model_args["weights"], model_args["tag_weights"], model_args["embed_batch"])
                started.append(RayStages(ray, jobs, workers))
                summary.seconds["ray start"] = time.perf_counter() - t0
            return started[0].results(tasks)

        # one stream: a second wave would start a second dataset, whose actors load their models again; the
        # second wave's files come last all the same, so the ids are the local engine's
        _run_roots(db, scans, summary, models, results, *options, waves=False)
    if started:
        summary.nodes = {stage: dict(counts) for stage, counts in started[0].nodes.items() if counts}
        summary.fallback = started[0].fallback


def _make_models(db: Engine, embed, weights, backend, device, embed_batch, tag, tag_weights, min_score) -> "_Models":
    embedder = _embedder(db, embed, weights, backend, device, embed_batch) if embed else None
    tagger = _tagger(db, tag, tag_weights, backend, device, embedder) if tag else None
    return _Models(embedder, tagger, min_score)


@dataclass
class _Models:
    """The run's embedder and tagger (either may be None) and where each runs."""

    embedder: object
    tagger: object
    min_score: float

    def embedder_name(self) -> str | None:
        return self.embedder.spec.name if self.embedder is not None else None

    def tagger_name(self) -> str | None:
        return self.tagger.spec.name if self.tagger is not None else None

    def worker_embeds(self) -> bool:
        return self.embedder is not None and self.embedder.backend == "onnx"

    def worker_tags(self) -> bool:
        return self.tagger is not None and self.tagger.backend in ("onnx", "torch-cpu")

    def shared(self) -> bool:
        """The tagger reads the embedder's logits: no input of its own."""
        return self.tagger is not None and self.tagger.shares(self.embedder)

    def worker_jobs(self, pool, workers: int, torch_loaded: bool, weights, tag_weights, embed_batch):
        """What the workers run (None: nothing). On CPU each worker runs the models on its
        own files, sharing the cores out."""
        if pool is None or not (self.worker_embeds() or self.worker_tags()):
            return None
        threads = max(1, (os.cpu_count() or 1) // workers)
        tagger = self.tagger if self.worker_tags() else None
        return ModelJobs(self.embedder.spec.name if self.worker_embeds() else None, weights,
                         tagger.spec.name if tagger else None, tag_weights,
                         "onnx" if tagger is not None and tagger.backend == "onnx" else "torch", self.min_score,
                         embed_batch, threads, 1 if torch_loaded else threads)

    def ray_jobs(self, ray, weights, tag_weights, embed_batch) -> ModelJobs | None:
        """What the Ray actors run: every model, on a GPU each where the cluster has GPUs, else on one CPU each."""
        if self.embedder is None and self.tagger is None:
            return None
        on_gpu = ray.cluster_resources().get("GPU", 0) > 0
        embed_backend = "torch" if on_gpu or (self.embedder and self.embedder.backend != "onnx") else "onnx"
        tag_backend = "onnx" if self.tagger is not None and self.tagger.backend == "onnx" and not on_gpu else "torch"
        return ModelJobs(self.embedder.spec.name if self.embedder else None, weights,
                         self.tagger.spec.name if self.tagger else None, tag_weights, tag_backend, self.min_score,
                         embed_batch, 1, 1, embed_backend, "cuda" if on_gpu else "cpu")


def _embedder(engine: Engine, name, weights, backend, device, batch):
    from simsearch.models import create_embedder  # noqa: PLC0415 - torch / onnxruntime only when embedding

    embedder = create_embedder(name, weights=weights, backend=backend, device=device, batch_size=batch)
    with engine.begin() as conn:
        write.use_embedder(conn, embedder)
    return embedder


def tag_indexed(engine: Engine, tagger: str, *, weights: str | None = None, backend: str = "auto", device: str | None = None,
                min_score: float = 0.25, workers: int | None = None, batch_size: int = 256,
                progress: bool = False) -> int:
    """Tag the indexed images ``tagger`` has not looked at yet, with the indexing run's
    workers (decode and, on CPU, the tagger). An image whose bytes changed since it was
    indexed is left for the next index run. Returns how many images were tagged."""
    check_min_score(min_score)
    workers = workers or os.cpu_count() or 1
    with engine.connect() as conn:
        todo = write.untagged(conn, tagger)
        full = store.get_meta(conn, "decode", "draft") == "full"
    torch_loaded = "torch" in sys.modules
    done = 0
    with worker_pool(workers, len(todo)) as pool:
        model = _tagger(engine, tagger, weights, backend, device, None)
        models = _Models(None, model, min_score)
        jobs = models.worker_jobs(pool, workers, torch_loaded, None, weights, None)
        tasks = [Task(t.path, t.path, 0, 0, frozenset(), full, max(DEFAULT_MAX_PIXELS, t.pixels),
                      tag_input=_tag_input(model.spec)) for t in todo]
        bar = tqdm(total=len(todo), unit="img", desc="tagging", disable=not progress, file=sys.stderr)
        rows = iter(todo)
        batch: list[tuple[int, Result]] = []
        for result in extract_all(tasks, pool, jobs, ahead=2 * batch_size):
            row = next(rows)  # results come in task order
            if result.status == OK and result.columns["sha256"] == row.sha256:
                batch.append((row.id, result))
            if len(batch) >= batch_size:
                done += _write_tags(engine, models, batch)
                batch = []
            bar.update(1)
        done += _write_tags(engine, models, batch)
        bar.close()
    return done


def _write_tags(engine: Engine, models: _Models, batch: list[tuple[int, Result]]) -> int:
    results = infer([r for _, r in batch], None, models.tagger, models.min_score)
    with engine.begin() as conn:
        write.write_detections(conn, models.tagger.spec.name, [i for i, _ in batch], [r.detections for r in results])
    return len(batch)


def _tagger(engine: Engine, name, weights, backend, device, embedder):
    from simsearch.taggers import create_tagger  # noqa: PLC0415 - torch / onnxruntime only when tagging

    tagger = create_tagger(name, weights=weights, backend=backend, device=device, embedder=embedder)
    with engine.begin() as conn:
        write.use_tagger(conn, tagger)
    return tagger


def _decode_mode(engine: Engine, full_decode: bool | None) -> bool:
    """Whether the index decodes JPEGs at full size, fixed by its first run; a different mode is refused."""
    with engine.begin() as conn:
        return write.decode_mode(conn, None if full_decode is None else ("full" if full_decode else "draft")) == "full"


@dataclass
class _Root:
    """One root of a run: its id, and what the index knows of its files."""

    id: int
    known: dict


def _run_roots(engine: Engine, scans: list[Scan], summary: RunSummary, models: _Models, extract, full, max_pixels,
               batch_size, progress, waves: bool = True) -> None:
    """Index every root's files; ``extract(tasks)`` yields their results in task order (an engine's workers).
    The roots are planned together, in a few queries whatever their number, their tasks go through as one
    stream, and a batch of results from any roots is written in one transaction: files spread over many
    folders (a file list: each folder is a root) keep every worker busy. Files the size of one listed before
    them wait for a second stream, which finds the first one's bytes indexed: an identical file takes its
    features instead of being decoded again (``_waves``). Without ``waves`` the second wave follows the first in
    one stream: the same index, with identical files decoded."""
    t0 = time.perf_counter()
    with engine.begin() as conn:
        ids = write.root_ids(conn, [scan.root for scan in scans])
        known = write.known_files(conn, list(ids.values()), models.embedder_name(), models.tagger_name())
        roots = [_Root(ids[scan.root], known[ids[scan.root]]) for scan in scans]
        todo = [_triage(conn, scan, root, summary, max_pixels) for scan, root in zip(scans, roots)]
    first, second = _waves(scans, roots, todo)
    streams = [first, second] if waves else [first + second]
    summary.seconds["plan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bar = tqdm(total=sum(len(files) for _, _, files in first + second), unit="img", desc="indexing",
               disable=not progress, file=sys.stderr)
    for parts in streams:
        if any(files for _, _, files in parts):
            _stream(engine, parts, summary, models, extract, (full, max_pixels), batch_size, bar)
    bar.close()
    summary.seconds["extract+write"] = time.perf_counter() - t0


def _waves(scans: list[Scan], roots: list[_Root], todo: list[list[tuple]]) -> tuple[list[tuple], list[tuple]]:
    """Each root's files to read (``_triage``) in two waves of (scan, root, files) parts: a file of the same size
    as one listed before it in this run (identical bytes have the same size) goes in the second. Sizes are taken
    from every listed file, read or not, so a run that resumes a killed one puts each file in the wave it had,
    and the ids come out in the order an uninterrupted run gives them."""
    seen: set[int] = set()
    first, second = [], []
    for scan, root, files in zip(scans, roots, todo):
        reading = {id(item[0]): item for item in files}
        now, later = [], []
        for entry in scan.entries:
            item = reading.get(id(entry))
            if item is not None:
                (later if entry.size in seen else now).append(item)
            seen.add(entry.size)
        first.append((scan, root, now))
        second.append((scan, root, later))
    return first, second


def _stream(engine: Engine, parts: list[tuple[Scan, _Root, list[tuple]]], summary: RunSummary, models: _Models,
            extract, decoding: tuple, batch_size: int, bar) -> None:
    """The files to read of each (scan, root, files) part, in order, through ``extract``, written in batches.
    Bytes the index already holds (with every feature of this run) are not decoded: the file takes their
    features."""
    with engine.begin() as conn:
        content = write.indexed_content(conn, [entry.size for _, _, files in parts for entry, _, _ in files],
                                        models.embedder_name(), models.tagger_name())
    # (size, sha256) -> the indexed image whose features identical bytes take
    sources = {(size, sha): image_id for size, shas in content.items() for sha, image_id in shas.items()}
    owners, tasks = [], []
    for scan, root, files in parts:
        owners += [root] * len(files)
        tasks += _tasks(scan.root, files, content, models, *decoding)
    batch: list[tuple[_Root, Result]] = []
    for owner, result in zip(owners, extract(tasks)):
        batch.append((owner, result))
        if len(batch) >= batch_size:
            _write(engine, batch, sources, models, summary)
            bar.update(len(batch))
            batch = []
    _write(engine, batch, sources, models, summary)
    bar.update(len(batch))


def _triage(conn, scan: Scan, root: _Root, summary: RunSummary, max_pixels: int) -> list[tuple]:
    """A root's files to read, each (entry, what the index holds of it or None, same size and mtime); what
    needs no reading is done here: unchanged files that were removed are restored, vanished files marked
    removed, entries that are not files recorded as failures. An unchanged file refused as too large is read
    again when ``max_pixels`` admits it."""
    todo, restore = [], []
    for entry in scan.entries:
        summary.scanned += 1
        row = root.known.get(os.fsencode(entry.relpath))
        same_file = row is not None and row.size == entry.size and row.mtime_ns == entry.mtime_ns
        admitted = row is not None and row.status == FAILED and 0 < row.pixels <= max_pixels
        if same_file and row.complete and not admitted:
            summary.unchanged += 1
            if row.status == REMOVED:
                restore.append(row.id)
                summary.restored += 1
            continue
        if same_file:
            summary.refreshed += 1
        elif row is None:
            summary.new += 1
        else:
            summary.changed += 1
        todo.append((entry, row, same_file))
    write.record_errors(conn, root.id, scan.errors)
    write.set_status(conn, restore, OK)
    if scan.walked:
        present = {os.fsencode(e.relpath) for e in scan.entries}
        walked = [b"" if not w else os.fsencode(w) + b"/" for w in scan.walked]
        gone = [row.id for raw, row in root.known.items()
                if raw not in present and row.status != REMOVED and any(raw.startswith(w) for w in walked)]
        write.set_status(conn, gone, REMOVED)
        summary.removed += len(gone)
    summary.failed += len(scan.errors)
    summary.skipped += scan.skipped
    return todo


def _tasks(folder: str, todo: list[tuple], content: dict, models: _Models, full: bool, max_pixels: int) -> list[Task]:
    """The tasks reading the files to read (``_triage``) of the root at ``folder``; ``content``: size ->
    {sha256: image id} of the indexed images whose features identical bytes take (``write.indexed_content``)."""
    embedder, tagger = models.embedder, models.tagger
    inputs = {"embed_size": embedder.spec.input_size if embedder else None,
              "tag_input": _tag_input(tagger.spec) if tagger and not models.shared() else None}
    tasks = []
    for entry, row, same_file in todo:
        # bytes already indexed are not decoded again: a changed file's own (unless a feature is missing), or
        # another indexed file's of the same size, whose features it takes
        reusable = set(content.get(entry.size, ()))
        if row is not None and row.status == OK and row.complete:
            reusable.add(row.sha256)
        # a file this index took, unchanged, is taken again whatever this run's limit: adding a feature to it must
        # not turn it into a failure (an earlier run may have raised --max-pixels)
        limit = max(max_pixels, row.pixels) if same_file and row.status == OK else max_pixels
        tasks.append(Task(os.path.join(folder, entry.relpath), entry.relpath, entry.size, entry.mtime_ns,
                          frozenset(reusable), full, limit, **inputs))
    return tasks


def _write_rows(conn, batch: list[tuple[_Root, Result]], rows: list[dict]) -> list[int]:
    """Each root's rows of the batch written together; the image ids in batch order."""
    by_root: dict[int, tuple[_Root, list[int]]] = {}
    for n, (root, _) in enumerate(batch):
        by_root.setdefault(root.id, (root, []))[1].append(n)
    ids = [0] * len(rows)
    for root, positions in by_root.values():
        for n, image_id in zip(positions, write.write_files(conn, root.id, [rows[n] for n in positions], root.known)):
            ids[n] = image_id
    return ids


def _stale(result: Result, row: KnownFile | None) -> bool:
    """Whether a known image's stored features (every model's embeddings and tags) belong
    to other bytes than these, or to a file that no longer decodes."""
    if row is None or result.status == "same":
        return False
    return result.status == FAILED or result.columns["sha256"] != row.sha256


def _tag_input(spec) -> tuple:
    return spec.resize, spec.input_size, spec.max_size


def _write(engine: Engine, batch: list[tuple[_Root, Result]], sources: dict, models: _Models,
           summary: RunSummary) -> None:
    """A batch of results, of one root or several, written in one transaction; ``sources``: (size, sha256) ->
    the indexed image whose features identical bytes take."""
    if not batch:
        return
    t0 = time.perf_counter()
    # what the workers left: GPU, small runs
    results = infer([r for _, r in batch], models.embedder, models.tagger, models.min_score)
    summary.seconds["models"] = summary.seconds.get("models", 0.0) + time.perf_counter() - t0
    rows, copies, stale = [], {}, []  # copies: position in batch -> the image whose features it takes
    for n, ((root, _), r) in enumerate(zip(batch, results)):
        row = root.known.get(os.fsencode(r.relpath))
        if r.status == "same":
            source = sources.get((r.size, r.columns["sha256"]))
            if source is None or (row is not None and row.id == source):  # its own bytes: refresh size and mtime
                rows.append({"relpath": r.relpath, "size": r.size, "mtime_ns": r.mtime_ns, "status": OK,
                             "error": None})
                summary.unchanged += 1
                continue
            copies[n] = source
        rows.append({"relpath": r.relpath, "size": r.size, "mtime_ns": r.mtime_ns, "status": r.status,
                     "error": r.error, **r.columns})
        if r.status == FAILED:
            summary.failed += 1
        else:
            summary.indexed += 1
        if _stale(r, row):
            stale.append(n)
    summary.reused += len(copies)
    embedded = [n for n, r in enumerate(results) if r.vector is not None]
    tagged = [n for n, r in enumerate(results) if r.detections is not None]
    with engine.begin() as conn:
        taken = write.feature_columns(conn, list(copies.values()))
        for n, source in copies.items():
            rows[n].update(taken[source], status=OK)
        ids = _write_rows(conn, batch, rows)
        write.drop_features(conn, [ids[n] for n in stale])
        write.copy_features(conn, list(copies.values()), [ids[n] for n in copies])
        if models.embedder is not None:
            write.write_embeddings(conn, models.embedder.spec.name, [ids[n] for n in embedded],
                                   [results[n].vector for n in embedded])
        if models.tagger is not None:
            write.write_detections(conn, models.tagger.spec.name, [ids[n] for n in tagged],
                                   [results[n].detections for n in tagged])
    summary.embedded += len(embedded)
    summary.tagged += len(tagged)
