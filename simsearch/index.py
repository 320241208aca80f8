"""The ``Index`` façade: short methods over the modules that each own one job
(``reads``, ``queries``, ``duplicates``, ``clusterings``, ``tags``, ``report``);
writes go to the write side (``indexer``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection

from . import clusterings, duplicates, matching, queries, store, tags
from .errors import IndexNotFound, InvalidArgument
from .locks import Writer, writer_lock
from .moves import Moves, move_duplicates, prepare_target, undo
from .names import ANN_KINDS, DEFAULT_EMBEDDER, DEFAULT_INDEX_DIR
from .reads import ImageRecord, Reads

__all__ = ["DEFAULT_EMBEDDER", "DEFAULT_INDEX_DIR", "Index", "open_index"]


def default_index_dir() -> Path:
    return Path(os.environ.get("SIMSEARCH_INDEX") or DEFAULT_INDEX_DIR)


def open_index(path: str | os.PathLike | None = None, *, db: str | None = None, create: bool = False,
               read_only: bool | None = None) -> "Index":
    """Open the index at ``path`` (default: ``$SIMSEARCH_INDEX`` or ``./.simsearch``).

    ``db`` is an SQLAlchemy URL for the metadata (default: SQLite inside the
    directory). ``create=True`` makes a new index where none exists. ``read_only``: open without
    writing anything (SQLite's read-only mode; FAISS indexes built in memory); by default, where
    the index's folder or database file cannot be written.
    """
    directory = Path(path) if path is not None else default_index_dir()
    if db is None:
        exists = (directory / store.DB_FILE).exists()
        if not exists and create:
            directory.mkdir(parents=True, exist_ok=True)  # SQLite needs the folder before it connects
    if read_only is None:  # an existing index this user cannot write
        read_only = (db is not None or exists) and directory.is_dir() and not _writable(directory, db)
    engine = store.make_engine(db or store.sqlite_url(directory, read_only), read_only)
    try:
        if db is not None:  # the index lives in the database; the folder only holds derived FAISS files
            exists = store.is_index(engine)
        if not exists and not create:
            where = f"in the database {engine.url.render_as_string(hide_password=True)}" if db else f"at {directory}"
            raise IndexNotFound.hinted(f"no index {where}; create one with {{}}", "open_index(..., create=True)",
                                       f"simsearch index PATH --index {directory}" + (" --db URL" if db else ""))
        with store.disk_full_is_one_error(directory):
            store.upgrade(engine, read_only, lock=lambda: writer_lock(engine, wait=True))
    except BaseException:
        engine.dispose()  # no connection left open on a failed open
        raise
    if not read_only:
        directory.mkdir(parents=True, exist_ok=True)  # only once the database answered: no empty folder left
        store.mark_not_indexed(directory, "a simsearch index")  # an index inside the folder it indexes
    return Index(directory, engine, read_only)


def _writable(directory: Path, db: str | None) -> bool:
    files = [directory] if db is not None else [directory, directory / store.DB_FILE]
    return all(os.access(f, os.W_OK) for f in files)


class Index:
    """An image index: metadata and vectors in SQL, derived FAISS indexes beside them."""

    def __init__(self, directory: Path, engine, read_only: bool = False):
        self.directory = directory
        self.engine = engine
        self.read_only = read_only
        self._reads = Reads(engine, directory, read_only)
        self._writer = Writer(directory, engine, read_only)
        self._catalogue: matching.Catalogue | None = None  # what duplicates_of read, kept while the data is unchanged
        self._catalogue_lock = threading.Lock()  # concurrent first calls (a server's) load it once
        self._embedders: dict[tuple, object] = {}  # (model, spec, options) -> embedder: a session takes 60 to 80 ms

    # -- life cycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._catalogue = None
        self._embedders.clear()
        self.engine.dispose()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """A transaction: everything written inside commits together or not at all."""
        with self.writing(), self.engine.begin() as conn:
            yield conn

    def writing(self):
        """A block holding this index's writer lock (``simsearch.locks.Writer``); re-entrant. Raises
        ``IndexBusy`` at once if another process holds it, ``InvalidArgument`` on a read-only index."""
        return self._writer.hold()

    @property
    def full_decode(self) -> bool:
        """Whether JPEGs are decoded at full size (fixed when the index is first written)."""
        return self._reads.full_decode

    @property
    def ann(self) -> str:
        """The kind of vector index: auto (exact below 100k vectors, IVF above), flat or ivf."""
        return self._reads.meta("ann", "auto")

    def set_ann(self, kind: str) -> None:

        if kind not in ANN_KINDS:
            raise InvalidArgument(f"unknown vector index {kind!r}; choose one of {', '.join(ANN_KINDS)}")
        with self.atomic() as conn:
            store.set_meta(conn, "ann", kind)

    # -- writing (the write side, imported on use so that reading never loads it) ----------------
    def add(self, paths: Iterable[str | os.PathLike] | str | os.PathLike, **options):
        """Index files and folders (recursively), or one; see ``simsearch.indexer.run`` for options."""
        from simsearch.indexer import run  # noqa: PLC0415

        if isinstance(paths, (str, os.PathLike)):  # one path, not its letters
            paths = [paths]
        with self.writing():
            self._reads = Reads(self.engine, self.directory)  # roots may be added
            return run(self.engine, [os.fspath(p) for p in paths], **options)

    def tag(self, tagger: str = "yolov3-tiny", *, min_score: float = 0.25, weights: str | None = None,
            backend: str = "auto", device: str | None = None, workers: int | None = None,
            progress: bool = False) -> int:
        """Run ``tagger`` over the indexed images it has not looked at yet; returns how many it
        tagged. Each batch commits with its detections, so an interrupted run resumes."""
        from simsearch.indexer import tag_indexed  # noqa: PLC0415

        with self.writing():
            return tag_indexed(self.engine, tagger, weights=weights, backend=backend, device=device,
                               min_score=min_score, workers=workers, progress=progress)

    def untagged(self, tagger: str) -> list[tuple[int, str, str]]:
        """(id, path on disk, sha256) of the indexed images ``tagger`` has not looked at, in id order."""
        from simsearch.indexer.write import untagged  # noqa: PLC0415

        with self.engine.connect() as conn:
            return [(row.id, row.path, row.sha256) for row in untagged(conn, tagger)]

    def undo(self, manifest: str | os.PathLike) -> tuple[int, int]:
        """Move back the files a ``move_duplicates`` manifest records, each checked first (its
        SHA-256, its paths, that this index moved it); one bad line refuses the whole manifest.
        Returns (files moved back, files found back already)."""
        with self.writing():
            return undo(self, manifest)

    # -- reading ------------------------------------------------------------------------------
    def images(self) -> list[ImageRecord]:
        """Every indexed image (status ok), in index order."""
        return self._reads.ordered(self._reads.image_ids())

    def image(self, image_id: int) -> ImageRecord | None:
        """The image with this id (whatever its status), or None."""
        return self._reads.records([image_id]).get(image_id)

    def root_paths(self) -> list[str]:
        """The folders (or files' folders) this index was built from, on disk."""
        return [path for path, _ in self._reads.root_paths().values()]

    def gone_roots(self) -> list[tuple[str, int]]:
        """(folder, images listed from it) for each folder this index was built from that no longer exists
        while images from it are still listed (``add`` it again to mark them removed)."""
        listed = self._reads.images_per_root()
        return [(path, listed[root]) for root, (path, _) in sorted(self._reads.root_paths().items())
                if listed.get(root) and not os.path.lexists(path)]

    @property
    def data_version(self) -> int:
        """A number that changes whenever the indexed data changes (for caches of derived results)."""
        return self._reads.data_version()

    def hash_codes(self, method: str):
        """(image ids, uint64 codes) of hash ``method``, in id order."""
        return self._reads.hash_codes(method)

    def vectors(self, model: str):
        """(image ids, float32 vectors) of the indexed images' ``model`` embeddings, in id order."""
        return self._reads.vectors(model)

    def embedding_models(self) -> dict[str, dict]:
        """name -> stored spec (with the weights' sha256) of each embedder the index holds vectors of."""
        return self._reads.embedding_models()

    def embedder(self, model: str | None = None, **options):
        """The embedder that made this index's ``model`` vectors, checked against the stored spec
        (``options`` go to ``simsearch.models.create_embedder``: weights, backend, device); made once for each
        model, stored spec and options, and kept for later queries."""
        model = self._reads.model(model)
        key = (model, repr(sorted(self._reads.embedding_models()[model].items())), tuple(sorted(options.items())))
        if key not in self._embedders:
            self._embedders[key] = queries.make_embedder(self._reads, model, **options)
        return self._embedders[key]

    def hash_query(self, image) -> dict[str, int]:
        """The four hashes of a query image, decoded the way the index decodes."""
        return queries.hash_query(self._reads, image)

    def failures(self) -> list[dict]:
        return self._reads.failures()

    def stats(self) -> dict:
        """Counts of images, failures, removed files, hashes, embeddings, tagged images, sizes."""
        return self._reads.stats()

    # -- queries ------------------------------------------------------------------------------
    def search(self, image, *, by: str = "auto", k: int = 10, max_distance: int | None = None,
               min_similarity: float | None = None, model: str | None = None, rotations: bool = False,
               embedder=None, tags: list[str] | None = None, min_score: float = 0.25,
               tagger: str | None = None, **embedder_options) -> list[queries.Match]:
        """Nearest indexed images to ``image`` (a path, bytes, a PIL image or a numpy array).

        ``by``: ``embedding`` (cosine; ``rotations`` also matches the query's 8 rotations and
        flips), a hash method (Hamming), or ``auto`` (embedding when the index has embeddings,
        else phash). ``tags`` keeps only images holding every label at ``min_score`` or more
        (found by ``tagger``, if given; embedding search only). The query is embedded by
        ``embedder``, else by the index's own (``embedder_options``: weights, backend, device).
        Raises ``ImageError`` if the query cannot be read.
        """
        queries.check_query(image)  # a wrong type is the caller's error here, one query's error in a bulk search
        [result] = self.search_many([image], by=by, k=k, max_distance=max_distance, min_similarity=min_similarity,
                                    model=model, rotations=rotations, embedder=embedder, tags=tags,
                                    min_score=min_score, tagger=tagger, **embedder_options)
        if result.error is not None:
            raise result.error
        return result.matches

    def search_method(self, by: str = "auto") -> str:
        """The method a search ``by`` runs: ``auto`` is embedding where the index has embeddings, else phash."""
        return queries.resolve_method(self._reads, by)

    def search_many(self, images: Iterable, *, by: str = "auto", k: int = 10, max_distance: int | None = None,
                    min_similarity: float | None = None, model: str | None = None, rotations: bool = False,
                    embedder=None, tags: list[str] | None = None, min_score: float = 0.25,
                    tagger: str | None = None, **embedder_options) -> list[queries.QueryResult]:
        """``search`` for many queries at once, in order: they are encoded in batches and each batch is one
        FAISS call. A query that cannot be read gets its ``error``; the others are answered. ``images`` may
        be one query, or an N x H x W x C array of N (``queries.as_queries``)."""
        images = queries.as_queries(images)
        by = queries.checked_search(self._reads, by, k, max_distance, min_similarity)
        if by != "embedding":
            if tags:
                raise InvalidArgument("tag filters apply to embedding search: search by embedding")
            return queries.search_many(self._reads, images, by, k, max_distance=max_distance)
        allowed = self.tagged_ids(tags, min_score=min_score, tagger=tagger) if tags else None
        embedder = embedder or self.embedder(model, **embedder_options)
        return queries.search_many(self._reads, images, by, k, min_similarity=min_similarity, model=model,
                                   rotations=rotations, embedder=embedder, allowed=allowed)

    def duplicates_of(self, images: Iterable, *, level: str = "copy", cut: float | None = None,
                      model: str | None = None, embedder=None, **embedder_options) -> list[matching.QueryDuplicates]:
        """For each of ``images`` (which need not be indexed: paths, bytes, PIL images or arrays, or one of
        them), the indexed images ``duplicates`` would decide duplicates of it had it been indexed, at
        ``level`` and ``cut``, most probable first (``simsearch.matching``). A query that cannot be read
        gets its ``error``; the others are answered. The index's data that matching reads is kept for the next
        call while it is unchanged (``simsearch.matching.Catalogue``)."""
        images = queries.as_queries(images)
        matching.check_decision(level, cut)
        model = duplicates.embedding_model(self._reads, model)
        if model is not None and embedder is None:  # checked against the stored spec before anything is loaded
            embedder = self.embedder(model, **embedder_options)
        with self._catalogue_lock:
            catalogue = self._catalogue = matching.Catalogue.current(self._reads, model, self._catalogue)
        return matching.duplicates_of(self._reads, catalogue, images, level, cut, embedder)

    def duplicates(self, *, by: str = "auto", level: str = "copy", cut: float | None = None,
                   max_distance: int | None = None, min_similarity: float | None = None,
                   model: str | None = None, progress: bool = False) -> list[list[ImageRecord]]:
        """Duplicate groups, largest first; in each, the image to keep comes first.

        ``auto`` (the default) decides each candidate pair with calibrated models at ``level``:
        ``copy`` (the same picture after edits) or ``scene`` (also other shots of the same scene),
        at probability ``cut`` (default: the level's calibrated cut); every member of a group
        matches its keeper. ``exact``, a hash method (within ``max_distance`` bits) and
        ``embedding`` (cosine at least ``min_similarity``) are single-feature rules whose
        pairs are grouped as connected components. ``progress``: bars on stderr while borderline
        pairs are verified (the long part on a large collection).
        """
        groups = self.duplicate_ids(by, max_distance, min_similarity, model, level=level, cut=cut, progress=progress)
        return [duplicates.keep_first(self._reads, g) for g in groups]

    def duplicate_ids(self, by: str = "auto", max_distance: int | None = None, min_similarity: float | None = None,
                      model: str | None = None, *, level: str = "copy", cut: float | None = None,
                      progress: bool = False) -> list[list[int]]:
        """Duplicate groups as lists of image ids."""
        return duplicates.duplicate_ids(self._reads, by, max_distance, min_similarity, model, level=level, cut=cut,
                                        progress=progress)

    def duplicate_map(self, **options) -> dict[str, list[str]]:
        """imagededup's ``{path: [paths of its duplicates]}`` map (``options`` as for ``duplicates``)."""
        return duplicates.imagededup_map(self._reads, self.duplicates(**options))

    def duplicate_pairs(self, *, level: str = "copy", cut: float | None = None, model: str | None = None,
                        progress: bool = False) -> list[list[duplicates.Pair]]:
        """The calibrated groups explained: per group, the keeper's pair with each member (score,
        inputs, and the transform where verified)."""
        return duplicates.group_pairs(duplicates.decide(self._reads, level, cut, model, progress=progress))

    def explain(self, a, b, *, level: str = "copy", cut: float | None = None,
                model: str | None = None) -> duplicates.Pair:
        """The decision on two indexed images (ids, or paths as listed or on disk): inputs, score,
        decision, and the estimated transform (verification always runs here)."""
        return duplicates.explain(self._reads, self._reads.image_id(a), self._reads.image_id(b), level, cut, model)

    def move_duplicates(self, target: str | os.PathLike, manifest: str | os.PathLike, **options) -> Moves:
        """Keep the first image of each duplicate group and move the others under ``target``, recording
        each move in ``manifest`` (for ``simsearch undo``). Files gone or changed since they were
        indexed, and the members of a group whose keeper is, stay in place (``Moves.skipped``)."""
        prepare_target(target, manifest)  # a target that cannot be written fails before the pairs are decided
        with self.writing():
            return move_duplicates(self, self.duplicates(**options), target, manifest)

    def move_group(self, keeper: int, members: list[int], target: str | os.PathLike,
                   manifest: str | os.PathLike) -> Moves:
        """Move the images ``members`` (ids) aside under ``target``, keeping ``keeper``: a duplicate group
        whose keeper a person chose, through the same machinery and manifest as ``move_duplicates``."""
        ids = [keeper, *[m for m in members if m != keeper]]
        indexed = set(self._reads.image_ids(ids))
        missing = [i for i in ids if i not in indexed]
        if missing:
            raise InvalidArgument(f"image {missing[0]} is not in the index (or was moved aside already)")
        records = self._reads.records(ids)
        with self.writing():
            return move_duplicates(self, [[records[i] for i in ids]], target, manifest)

    # -- clusters -----------------------------------------------------------------------------
    def cluster(self, k: int | None = None, *, auto: bool = False, by: str = "embedding", model: str | None = None,
                name: str | None = None, seed: int = 0, exact_below: int | None = None, solver: str = "pam") -> dict:
        """k-medoids over the indexed images (``auto``: k by silhouette over 2-20), stored under
        ``name``. Clusters are numbered from 1, largest first. ``solver``: ``pam`` (built in) or
        ``kmedoids`` (the GPL-3.0 package, an optional extra). Returns the run as listed."""
        with self.writing():
            return clusterings.make_clustering(self._reads, k, auto=auto, by=by, model=model, name=name,
                                               seed=seed, exact_below=exact_below, solver=solver)

    def clusterings(self) -> list[dict]:
        """Every stored clustering run, oldest first."""
        return clusterings.clusterings(self._reads)

    def clusters(self, run: str) -> list[dict]:
        """The clusters of ``run``: number, size, medoid image and mean distance to it."""
        return clusterings.clusters(self._reads, run)

    def cluster_members(self, run: str, cluster: int) -> list[clusterings.Member]:
        """The images of one cluster of ``run``: the medoid first, then by distance to it."""
        return clusterings.cluster_members(self._reads, run, cluster)

    # -- tags ---------------------------------------------------------------------------------
    def taggers(self) -> dict[str, dict]:
        """The taggers that wrote into this index -> their stored specs."""
        return tags.taggers(self._reads)

    def tags(self, *, min_score: float = 0.0, tagger: str | None = None) -> list[dict]:
        """Images per label (most first), counting detections at or above ``min_score``."""
        return tags.label_counts(self._reads, min_score=min_score, tagger=tagger)

    def tagged_ids(self, labels: list[str], *, min_score: float = 0.25, tagger: str | None = None) -> set[int]:
        """Ids of indexed images holding every one of ``labels`` at ``min_score`` or more."""
        return tags.tagged_ids(self._reads, labels, min_score=min_score, tagger=tagger)

    def with_tags(self, labels: list[str], *, min_score: float = 0.25, tagger: str | None = None) -> list[ImageRecord]:
        """Indexed images holding every one of ``labels`` (e.g. ["chair", "bed"]), in index order."""
        return tags.with_tags(self._reads, labels, min_score=min_score, tagger=tagger)

    def detections(self, image_id: int, *, tagger: str | None = None) -> list[dict]:
        """What the taggers found in one indexed image, best first."""
        return tags.detections(self._reads, image_id, tagger=tagger)

    # -- reports ------------------------------------------------------------------------------
    def report_clusters(self, run: str, out: str | os.PathLike) -> Path:
        """A static HTML page of ``run``: one row per cluster, medoid first; returns its path."""
        from .report import clusters_page  # noqa: PLC0415

        return clusters_page(self._reads, run, out)

    def report_duplicates(self, out: str | os.PathLike, **options) -> Path:
        """A static HTML page of the duplicate groups (``options`` as for ``duplicates``), keeper first;
        for ``auto``, each member with its probability and the reason."""
        from .report import duplicates_page, pair_groups_page  # noqa: PLC0415

        if options.get("by", "auto") == "auto":
            level, cut, model = options.get("level", "copy"), options.get("cut"), options.get("model")
            return pair_groups_page(self.duplicate_pairs(level=level, cut=cut, model=model), out, level)
        return duplicates_page(self.duplicates(**options), out, options["by"])
