"""The ``Index``: one object owning the database, the derived FAISS indexes and the queries."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, bindparam, func, select

from . import store
from .errors import IndexNotFound, InvalidArgument
from .hamming import HASH_BITS, connected_groups, hamming_edges
from .hashing import DIHEDRAL, check_method, hash_image, to_uint64
from .imageio import decode, decode_file
from .schema import (FAILED, HASH_METHODS, OK, REMOVED, ClusterMember, ClusteringRun, Embedder, Embedding, Failure,
                     Image, Root, Tagged, Tagger)
from .schema import Detection as DetectionRow
from .taggers import check_min_score

DEFAULT_INDEX_DIR = ".simsearch"
DEFAULT_EMBEDDER = "efficientnet_lite0"
# defaults chosen on the development duplicate set (see README, "Choosing thresholds")
DEFAULT_MAX_DISTANCE = {"phash": 2, "dhash": 1, "whash": 0, "ahash": 0}
DEFAULT_MIN_SIMILARITY = 0.98  # cosine, embeddings alone
AUTO_MAX_DISTANCE = 1  # pHash over the 8 rotations and flips, in --by auto
AUTO_MIN_SIMILARITY = 0.985  # cosine, in --by auto
SEARCH_METHODS = ("auto", "embedding") + HASH_METHODS
DUPLICATE_METHODS = ("auto", "exact", "embedding") + HASH_METHODS
_IN_CHUNK = 900  # ids per IN (...) clause


@dataclass(frozen=True)
class ImageRecord:
    """An indexed image as queries return it."""

    id: int
    path: str  # relative to its root (absolute where the index has several roots)
    abspath: str  # where the file is on disk
    size: int
    width: int
    height: int
    format: str
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Match:
    """A search hit: Hamming ``distance`` for a hash search, cosine ``similarity`` for embeddings."""

    image: ImageRecord
    distance: int | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class Member:
    """An image in a cluster, with its distance to the cluster's medoid (1 - cosine, or bits)."""

    image: ImageRecord
    cluster: int
    distance: float
    medoid: bool


def default_index_dir() -> Path:
    return Path(os.environ.get("SIMSEARCH_INDEX") or DEFAULT_INDEX_DIR)


def open_index(path: str | os.PathLike | None = None, *, db: str | None = None, create: bool = False) -> "Index":
    """Open the index at ``path`` (default: ``$SIMSEARCH_INDEX`` or ``./.simsearch``).

    ``db`` is an SQLAlchemy URL for the metadata (default: SQLite inside the
    directory). ``create=True`` makes a new index where none exists.
    """
    directory = Path(path) if path is not None else default_index_dir()
    url = db or store.sqlite_url(directory)
    if not directory.is_dir() or (db is None and not (directory / store.DB_FILE).exists()):
        if not create:
            raise IndexNotFound(
                f"no index at {directory}; create one with: simsearch index PATH --index {directory}"
            )
        directory.mkdir(parents=True, exist_ok=True)
    engine = store.make_engine(url)
    store.upgrade(engine)
    return Index(directory, engine)


class Index:
    """An image index: metadata in SQL, derived FAISS binary indexes per hash."""

    def __init__(self, directory: Path, engine):
        self.directory = directory
        self.engine = engine
        self._roots: dict[int, tuple[str, str]] | None = None

    # -- life cycle -------------------------------------------------------
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[Connection]:
        """A transaction: everything written inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    # -- settings ----------------------------------------------------------
    @property
    def full_decode(self) -> bool:
        """Whether JPEGs are decoded at full size (fixed when the index is first written)."""
        with self.engine.connect() as conn:
            return store.get_meta(conn, "decode", "draft") == "full"

    def data_version(self, conn: Connection | None = None) -> int:
        if conn is None:
            with self.engine.connect() as conn:
                return int(store.get_meta(conn, "data_version", "0"))
        return int(store.get_meta(conn, "data_version", "0"))

    def bump_version(self, conn: Connection) -> None:
        store.set_meta(conn, "data_version", str(self.data_version(conn) + 1))

    # -- writing -----------------------------------------------------------
    def add(self, paths: Iterable[str | os.PathLike], **options):
        """Index files and folders (recursively); see ``indexer.run`` for options.

        The bulk pipeline lives in the write-side package ``indexer``; it is
        imported here, on use, so that reading an index never loads it.
        """
        from indexer import run  # noqa: PLC0415 - deliberate lazy import of the write side

        return run(self, [os.fspath(p) for p in paths], **options)

    def root_id(self, conn: Connection, path: str) -> int:
        raw = os.fsencode(path)
        found = conn.execute(select(Root.id).where(Root.path_raw == raw)).scalar()
        if found is not None:
            return found
        self._roots = None
        display = raw.decode("utf-8", "backslashreplace")
        return conn.execute(Root.__table__.insert().values(path=display, path_raw=raw)).inserted_primary_key[0]

    def known_files(self, conn: Connection, root_id: int, model: str | None = None,
                    tagger: str | None = None) -> dict[bytes, tuple]:
        """relpath bytes -> (id, size, mtime_ns, sha256, status, complete) for a root's files.

        ``complete`` is False for a decoded image that lacks a feature this code
        computes (the rotation hashes, an embedding by ``model``, tags by ``tagger``)."""
        cols = (Image.relpath_raw, Image.id, Image.size, Image.mtime_ns, Image.sha256, Image.status,
                Image.phash_dihedral.is_not(None))
        rows = conn.execute(select(*cols).where(Image.root_id == root_id)).all()
        in_root = Image.root_id == root_id
        embedded = tagged = None
        if model is not None:
            embedded = set(conn.execute(select(Embedding.image_id).join(Image, Image.id == Embedding.image_id).where(
                in_root, Embedding.model == model)).scalars())
        if tagger is not None:
            tagged = set(conn.execute(select(Tagged.image_id).join(Image, Image.id == Tagged.image_id).where(
                in_root, Tagged.tagger == tagger)).scalars())

        def complete(r) -> bool:
            return r[5] != OK or (bool(r[6]) and (embedded is None or r[1] in embedded)
                                  and (tagged is None or r[1] in tagged))

        return {r[0]: (*r[1:6], complete(r)) for r in rows}

    def write_files(self, conn: Connection, root_id: int, rows: list[dict], known: dict[bytes, tuple]) -> list[int]:
        """Insert or update image rows (keys: Image columns plus ``error``: (kind, message) or None)
        and keep the failures table in step: one row per failing path, none for a good one.
        Returns the rows' image ids, in order."""
        stamp = time.time()
        inserts, updates, failures, cleared = [], [], [], []
        for row in rows:
            raw = os.fsencode(row.pop("relpath"))
            error = row.pop("error")
            row.update(root_id=root_id, relpath_raw=raw, relpath=raw.decode("utf-8", "backslashreplace"),
                       indexed_at=stamp)
            if raw in known:
                updates.append({"_id": known[raw][0], **row})
            else:
                inserts.append(row)
            cleared.append(raw)
            if error is not None:
                failures.append(_failure_row(root_id, raw, *error, stamp))
        self._delete_failures(conn, root_id, cleared)
        if inserts:
            conn.execute(Image.__table__.insert(), _same_keys(inserts))
        for group in _by_keys(updates):
            table = Image.__table__
            values = {k: bindparam(k) for k in group[0] if k != "_id"}
            conn.execute(table.update().where(table.c.id == bindparam("_id")).values(values), group)
        if failures:
            conn.execute(Failure.__table__.insert(), failures)
        self.bump_version(conn)
        ids = {raw: known[raw][0] for raw in cleared if raw in known}
        new = [raw for raw in cleared if raw not in known]
        for chunk in _chunks(new):
            ids.update(conn.execute(select(Image.relpath_raw, Image.id).where(
                Image.root_id == root_id, Image.relpath_raw.in_(chunk))).all())
        return [ids[raw] for raw in cleared]

    def use_embedder(self, conn: Connection, embedder) -> None:
        """Record the embedder's spec, or check that it is the one the index was built with."""
        self._use_model(conn, Embedder, embedder.spec.name, embedder.stored_spec(), "embeddings")

    def use_tagger(self, conn: Connection, tagger) -> None:
        """Record the tagger's spec, or check that it is the one that tagged the index."""
        self._use_model(conn, Tagger, tagger.spec.name, tagger.stored_spec(), "tags")

    @staticmethod
    def _use_model(conn: Connection, table, name: str, spec: str, what: str) -> None:
        stored = conn.execute(select(table.spec).where(table.name == name)).scalar()
        if stored is None:
            conn.execute(table.__table__.insert().values(name=name, spec=spec, created_at=time.time()))
        elif json.loads(stored) != json.loads(spec):
            raise InvalidArgument(
                f"this index holds {name} {what} made with other weights or settings "
                f"(weights sha256 {json.loads(stored).get('weights_sha256', '?')[:12]}); pass --weights PATH "
                "to those weights, or build a new index"
            )

    def write_embeddings(self, conn: Connection, model: str, ids: list[int], vectors: np.ndarray) -> None:
        """Store (replace) one vector per image id."""
        self.drop_embeddings(conn, model, ids)
        if ids:
            rows = [{"image_id": i, "model": model, "vector": np.asarray(v, "<f4").tobytes()}
                    for i, v in zip(ids, vectors)]
            conn.execute(Embedding.__table__.insert(), rows)

    def drop_embeddings(self, conn: Connection, model: str | None, ids: list[int]) -> None:
        table = Embedding.__table__
        for chunk in _chunks(ids):
            where = table.c.image_id.in_(chunk)
            conn.execute(table.delete().where(where if model is None else where & (table.c.model == model)))

    def write_detections(self, conn: Connection, tagger: str, ids: list[int], found: list[list]) -> None:
        """Store (replace) what ``tagger`` found in each image, and that it looked."""
        self.drop_detections(conn, tagger, ids)
        rows = [{"image_id": i, "tagger": tagger, "label": d.label, "score": d.score,
                 "x1": d.box[0], "y1": d.box[1], "x2": d.box[2], "y2": d.box[3]}
                for i, dets in zip(ids, found) for d in dets]
        if rows:
            conn.execute(DetectionRow.__table__.insert(), rows)
        if ids:
            conn.execute(Tagged.__table__.insert(), [{"image_id": i, "tagger": tagger} for i in ids])

    def drop_detections(self, conn: Connection, tagger: str | None, ids: list[int]) -> None:
        for table in (DetectionRow.__table__, Tagged.__table__):
            for chunk in _chunks(ids):
                where = table.c.image_id.in_(chunk)
                conn.execute(table.delete().where(where if tagger is None else where & (table.c.tagger == tagger)))

    def drop_features(self, conn: Connection, ids: list[int]) -> None:
        """Forget every embedding and tag of images whose bytes changed (or that no longer decode)."""
        self.drop_embeddings(conn, None, ids)
        self.drop_detections(conn, None, ids)

    def record_errors(self, conn: Connection, root_id: int, errors: list[tuple[str, str, str]]) -> None:
        """Failures of entries that are not files to decode (unlistable folders, broken links)."""
        stamp = time.time()
        raws = [os.fsencode(rel) for rel, _, _ in errors]
        self._delete_failures(conn, root_id, raws)
        if errors:
            conn.execute(Failure.__table__.insert(), [
                _failure_row(root_id, raw, kind, message, stamp) for raw, (_, kind, message) in zip(raws, errors)
            ])

    def set_status(self, conn: Connection, ids: list[int], status: str) -> None:
        """Mark images removed (gone or moved aside) or ok again (back, unchanged)."""
        for chunk in _chunks(ids):
            conn.execute(Image.__table__.update().where(Image.id.in_(chunk)).values(status=status))
        if ids:
            self.bump_version(conn)

    def restore_paths(self, paths: Iterable[str]) -> int:
        """Mark the records of files moved back into place as indexed again; returns how many."""
        roots = {rid: os.fsencode(root) + b"/" for rid, (root, _) in self._root_paths().items()}
        ids = []
        with self.atomic() as conn:
            for path in paths:
                raw = os.fsencode(os.path.abspath(path))
                for rid, prefix in roots.items():
                    if raw.startswith(prefix):
                        found = conn.execute(select(Image.id).where(
                            Image.root_id == rid, Image.relpath_raw == raw[len(prefix):])).scalar()
                        if found is not None:
                            ids.append(found)
            self.set_status(conn, ids, OK)
        return len(ids)

    def _delete_failures(self, conn: Connection, root_id: int, raws: list[bytes]) -> None:
        for chunk in _chunks(raws):
            conn.execute(Failure.__table__.delete().where(Failure.root_id == root_id, Failure.relpath_raw.in_(chunk)))

    # -- reading -----------------------------------------------------------
    def _root_paths(self) -> dict[int, tuple[str, str]]:
        """root id -> (filesystem path, display prefix: '' for a lone root)."""
        if self._roots is None:
            with self.engine.connect() as conn:
                rows = conn.execute(select(Root.id, Root.path_raw, Root.path)).all()
            single = len(rows) == 1
            self._roots = {rid: (os.fsdecode(raw), "" if single else disp + "/") for rid, raw, disp in rows}
        return self._roots

    def _records(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        ids = list(ids)
        roots = self._root_paths()
        out: dict[int, ImageRecord] = {}
        cols = (Image.id, Image.root_id, Image.relpath, Image.relpath_raw, Image.size, Image.width,
                Image.height, Image.format, Image.mtime_ns, Image.sha256)
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                for row in conn.execute(select(*cols).where(Image.id.in_(chunk))):
                    root, prefix = roots[row.root_id]
                    out[row.id] = ImageRecord(
                        row.id, prefix + row.relpath, os.path.join(root, os.fsdecode(row.relpath_raw)),
                        row.size, row.width, row.height, row.format, row.mtime_ns, row.sha256,
                    )
        return out

    def images(self) -> list[ImageRecord]:
        """Every indexed image (status ok), in index order."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(Image.id).where(Image.status == OK).order_by(Image.id)).scalars().all()
        records = self._records(ids)
        return [records[i] for i in ids]

    def hash_codes(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        column = getattr(Image, check_method(method))
        with self.engine.connect() as conn:
            rows = conn.execute(select(Image.id, column).where(Image.status == OK).order_by(Image.id)).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, to_uint64([r[1] for r in rows])

    def _decode_query(self, image: str | os.PathLike | bytes):
        """A query image decoded exactly the way the index decodes."""
        if isinstance(image, bytes):
            return decode(image, full=self.full_decode)
        return decode_file(os.fspath(image), full=self.full_decode)

    def hash_query(self, image: str | os.PathLike | bytes) -> dict[str, int]:
        """The four hashes of a query image, decoded the way the index decodes."""
        return hash_image(self._decode_query(image).image)

    # -- embeddings --------------------------------------------------------
    def embedding_models(self) -> dict[str, dict]:
        """name -> stored spec (with the weights' sha256) of each embedder the index holds vectors of."""
        with self.engine.connect() as conn:
            return {name: json.loads(spec) for name, spec in conn.execute(select(Embedder.name, Embedder.spec))}

    def _model(self, model: str | None) -> str:
        models = self.embedding_models()
        if model is None:
            if not models:
                raise InvalidArgument("this index has no embeddings; add them with: simsearch index PATH --embed")
            return DEFAULT_EMBEDDER if DEFAULT_EMBEDDER in models else sorted(models)[0]
        if model not in models:
            have = ", ".join(models) or "none"
            raise InvalidArgument(f"this index has no {model} embeddings (it has: {have}); "
                                  f"add them with: simsearch index PATH --embed {model}")
        return model

    def embedder(self, model: str | None = None, **options):
        """The embedder that made this index's ``model`` vectors, checked against the stored spec
        (``options`` go to ``simsearch.models.create_embedder``: weights, backend, device)."""
        from .models import create_embedder  # noqa: PLC0415 - torch / onnxruntime load on use

        model = self._model(model)
        embedder = create_embedder(model, **options)
        with self.engine.connect() as conn:
            self.use_embedder(conn, embedder)  # only reads: the spec is already stored
        return embedder

    def vectors(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, float32 vectors) of the indexed images' ``model`` embeddings, in id order."""
        query = (select(Embedding.image_id, Embedding.vector).join(Image, Image.id == Embedding.image_id)
                 .where(Embedding.model == model, Image.status == OK))
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(query.subquery())).scalar()
            dim = int(json.loads(conn.execute(select(Embedder.spec).where(Embedder.name == model)).scalar())["dim"])
            ids = np.empty(count, dtype=np.int64)
            vectors = np.empty((count, dim), dtype=np.float32)
            # streamed into preallocated arrays: 1M x 1280 floats is 5 GB, so never hold it twice
            streamed = conn.execution_options(stream_results=True, yield_per=10_000)
            rows = streamed.execute(query.order_by(Embedding.image_id))
            for n, (image_id, blob) in enumerate(rows):
                ids[n] = image_id
                vectors[n] = np.frombuffer(blob, dtype="<f4")
        return ids, vectors

    def _vector_index(self, model: str):
        from .faiss_store import vector_index  # noqa: PLC0415 - FAISS loads only when searching

        return vector_index(self, model, self.ann)

    @property
    def ann(self) -> str:
        """The kind of vector index: auto (exact below 100k vectors, IVF above), flat or ivf."""
        with self.engine.connect() as conn:
            return store.get_meta(conn, "ann", "auto")

    def set_ann(self, kind: str) -> None:
        from .faiss_store import ANN_KINDS  # noqa: PLC0415

        if kind not in ANN_KINDS:
            raise InvalidArgument(f"unknown vector index {kind!r}; choose one of {', '.join(ANN_KINDS)}")
        with self.atomic() as conn:
            store.set_meta(conn, "ann", kind)

    # -- queries -----------------------------------------------------------
    def search(self, image, *, by: str = "auto", k: int = 10, max_distance: int | None = None,
               min_similarity: float | None = None, model: str | None = None, rotations: bool = False,
               embedder=None, tags: list[str] | None = None, min_score: float = 0.25,
               tagger: str | None = None) -> list[Match]:
        """Nearest indexed images to ``image`` (a path or bytes).

        ``by``: ``embedding`` (cosine; ``rotations`` also matches the query's 8
        rotations and flips), a hash method (Hamming), or ``auto`` (embedding
        when the index has embeddings, else phash). ``tags`` keeps only images
        holding every label at ``min_score`` or more (found by ``tagger``, if given;
        embedding search only).
        """
        if by not in SEARCH_METHODS:
            raise InvalidArgument(f"unknown search method {by!r}; choose one of {', '.join(SEARCH_METHODS)}")
        if k < 1:
            raise InvalidArgument(f"k must be at least 1, got {k}")
        _check_distance(max_distance)
        _check_similarity(min_similarity)
        if by == "auto":
            by = "embedding" if self.embedding_models() else "phash"
        if by == "embedding":
            allowed = self.tagged_ids(tags, min_score=min_score, tagger=tagger) if tags else None
            return self._search_embedding(image, k, min_similarity, model, rotations, embedder, allowed)
        if tags:
            raise InvalidArgument("tag filters apply to embedding search: use --by embedding")
        query = self.hash_query(image)[by]
        from .faiss_store import binary_index  # noqa: PLC0415 - FAISS loads only when searching

        ids, distances = binary_index(self, by).search(query, k)
        records = self._records(ids.tolist())
        return [
            Match(records[i], distance=int(d))
            for i, d in zip(ids.tolist(), distances.tolist())
            if max_distance is None or d <= max_distance
        ]

    def _search_embedding(self, image, k, min_similarity, model, rotations, embedder, allowed=None) -> list[Match]:
        model = self._model(model)
        embedder = embedder or self.embedder(model)
        rgb = self._decode_query(image).image
        variants = [_dihedral(rgb, t) for t in DIHEDRAL] if rotations else [rgb]
        queries = embedder.encode(variants)
        index = self._vector_index(model)
        fetch = k if allowed is None else min(len(index.ids), max(10 * k, 100))
        while True:  # with a tag filter, fetch more neighbours until k pass it or none are left
            ids, sims = index.search(queries, fetch)
            best: dict[int, float] = {}
            for i, sim in zip(ids.ravel().tolist(), sims.ravel().tolist()):
                if i >= 0 and (allowed is None or i in allowed) and sim > best.get(i, -2.0):
                    best[i] = sim
            if allowed is None or len(best) >= k or fetch >= len(index.ids):
                break
            fetch = min(len(index.ids), fetch * 4)
        ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
        ranked = [(i, s) for i, s in ranked if min_similarity is None or s >= min_similarity]
        records = self._records([i for i, _ in ranked])
        return [Match(records[i], similarity=round(s, 6)) for i, s in ranked]

    def duplicates(self, *, by: str = "auto", max_distance: int | None = None,
                   min_similarity: float | None = None, model: str | None = None) -> list[list[ImageRecord]]:
        """Duplicate groups, largest first; in each, the image to keep comes first.

        ``exact`` groups same bytes or same decoded pixels; a hash method adds
        every pair within ``max_distance`` bits; ``embedding`` adds every pair of
        cosine similarity at least ``min_similarity``; ``auto`` (the default)
        combines exact matches, pHash over the 8 rotations and flips, and
        embeddings when the index has them.
        """
        return [self._keep_first(g) for g in self.duplicate_ids(by, max_distance, min_similarity, model)]

    def duplicate_ids(self, by: str = "auto", max_distance: int | None = None,
                      min_similarity: float | None = None, model: str | None = None) -> list[list[int]]:
        """Duplicate groups as lists of image ids."""
        if by not in DUPLICATE_METHODS:
            raise InvalidArgument(f"unknown duplicate method {by!r}; choose one of {', '.join(DUPLICATE_METHODS)}")
        _check_distance(max_distance)
        _check_similarity(min_similarity)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Image.id, Image.sha256, Image.pixel_digest, Image.phash_dihedral)
                .where(Image.status == OK).order_by(Image.id)
            ).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        edges = [_equal_edges([r[1] for r in rows]), _equal_edges([r[2] for r in rows])]
        if by in HASH_METHODS:
            _, codes = self.hash_codes(by)
            edges.append(hamming_edges(codes, DEFAULT_MAX_DISTANCE[by] if max_distance is None else max_distance))
        if by == "auto":
            distance = AUTO_MAX_DISTANCE if max_distance is None else max_distance
            edges.append(_dihedral_edges([r[3] for r in rows], distance))
        if by == "embedding" or (by == "auto" and self.embedding_models()):
            default = DEFAULT_MIN_SIMILARITY if by == "embedding" else AUTO_MIN_SIMILARITY
            edges.append(self._embedding_edges(ids, model, default if min_similarity is None else min_similarity))
        i = np.concatenate([e[0] for e in edges])
        j = np.concatenate([e[1] for e in edges])
        return [ids[g].tolist() for g in connected_groups(len(ids), i, j)]

    def _embedding_edges(self, ids: np.ndarray, model: str | None, min_similarity: float):
        """Pairs of rows of ``ids`` whose embeddings are at least ``min_similarity`` apart."""
        model = self._model(model)
        vec_ids, vectors = self.vectors(model)
        left, right = self._vector_index(model).pairs(vectors, min_similarity)
        rows = np.searchsorted(ids, vec_ids)  # both in id order; every embedded image is in ids
        return rows[left], rows[right]

    # -- clusters -----------------------------------------------------------
    def cluster(self, k: int | None = None, *, auto: bool = False, by: str = "embedding", model: str | None = None,
                name: str | None = None, seed: int = 0, exact_below: int | None = None) -> dict:
        """k-medoids over the indexed images (``auto``: k by silhouette over 2-20), stored under ``name``.

        Clusters are numbered from 1, largest first. Returns the run as ``clusterings()`` lists it.
        """
        from .cluster import EXACT_BELOW, cluster as kmedoids_run  # noqa: PLC0415 - kmedoids loads on use

        if by not in ("embedding",) + HASH_METHODS:
            raise InvalidArgument(f"cannot cluster by {by!r}; choose embedding or one of {', '.join(HASH_METHODS)}")
        if by == "embedding":
            model = self._model(model)
            ids, features = self.vectors(model)
        else:
            model = None
            ids, features = self.hash_codes(by)
        name = name or time.strftime("run-%Y%m%d-%H%M%S")
        if any(run["name"] == name for run in self.clusterings()):
            raise InvalidArgument(f"a clustering named {name!r} exists; choose another --name")
        result = kmedoids_run(features, by, k, auto=auto, seed=seed, exact_below=exact_below or EXACT_BELOW)
        sizes = np.bincount(result.labels, minlength=len(result.medoids))
        number = np.empty(len(sizes), dtype=np.int64)
        number[np.argsort(-sizes, kind="stable")] = np.arange(1, len(sizes) + 1)
        is_medoid = np.zeros(len(ids), dtype=bool)
        is_medoid[result.medoids] = True
        params = {"seed": seed, "auto": auto, "silhouette_by_k": result.scores}
        with self.atomic() as conn:
            run_id = conn.execute(ClusteringRun.__table__.insert().values(
                name=name, by=by, model=model, k=result.k, scheme=result.scheme, loss=result.loss,
                silhouette=result.silhouette, params=json.dumps(params), created_at=time.time(),
            )).inserted_primary_key[0]
            rows = [{"clustering_id": run_id, "image_id": int(i), "cluster": int(number[label]),
                     "distance": float(d), "is_medoid": bool(m)}
                    for i, label, d, m in zip(ids, result.labels, result.distances, is_medoid)]
            for start in range(0, len(rows), 50_000):
                conn.execute(ClusterMember.__table__.insert(), rows[start : start + 50_000])
        return next(run for run in self.clusterings() if run["name"] == name)

    def clusterings(self) -> list[dict]:
        """Every stored clustering run, oldest first."""
        with self.engine.connect() as conn:
            runs = conn.execute(select(ClusteringRun).order_by(ClusteringRun.id)).all()
            counts = dict(conn.execute(select(ClusterMember.clustering_id, func.count())
                                       .group_by(ClusterMember.clustering_id)).all())
        return [{"name": r.name, "by": r.by, "model": r.model, "k": r.k, "scheme": r.scheme,
                 "images": counts.get(r.id, 0), "loss": round(r.loss, 4),
                 "silhouette": None if r.silhouette is None else round(r.silhouette, 4),
                 "silhouette_by_k": json.loads(r.params).get("silhouette_by_k", {}),
                 "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))} for r in runs]

    def clusters(self, run: str) -> list[dict]:
        """The clusters of ``run``: number, size, medoid image and mean distance to it."""
        run_id = self._run_id(run)
        with self.engine.connect() as conn:
            stats = conn.execute(
                select(ClusterMember.cluster, func.count(), func.avg(ClusterMember.distance))
                .where(ClusterMember.clustering_id == run_id).group_by(ClusterMember.cluster)
                .order_by(ClusterMember.cluster)).all()
            medoids = dict(conn.execute(select(ClusterMember.cluster, ClusterMember.image_id).where(
                ClusterMember.clustering_id == run_id, ClusterMember.is_medoid)).all())
        records = self._records(medoids.values())
        return [{"cluster": c, "size": n, "medoid": records[medoids[c]], "mean_distance": round(float(avg), 4)}
                for c, n, avg in stats]

    def cluster_members(self, run: str, cluster: int) -> list[Member]:
        """The images of one cluster of ``run``: the medoid first, then by distance to it."""
        run_id = self._run_id(run)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ClusterMember.image_id, ClusterMember.distance, ClusterMember.is_medoid)
                .where(ClusterMember.clustering_id == run_id, ClusterMember.cluster == cluster)
                .order_by(ClusterMember.is_medoid.desc(), ClusterMember.distance, ClusterMember.image_id)).all()
        if not rows:
            raise InvalidArgument(f"clustering {run!r} has no cluster {cluster}")
        records = self._records(r[0] for r in rows)
        return [Member(records[i], cluster, round(float(d), 6), bool(m)) for i, d, m in rows]

    # -- tags -------------------------------------------------------------------
    def tag(self, tagger: str = "yolov3-tiny", *, min_score: float = 0.25, weights: str | None = None,
            backend: str = "auto", device: str | None = None, workers: int | None = None,
            progress: bool = False) -> int:
        """Run ``tagger`` (``simsearch.taggers``) over the indexed images it has not looked at
        yet, with the indexing pipeline's worker processes; returns how many it tagged. Each
        batch commits with its detections, so an interrupted run resumes where it stopped.
        (``add(..., tag=...)`` tags in the indexing pass instead, from the same decode.)"""
        from indexer import tag_indexed  # noqa: PLC0415 - the write side, imported on use as in add()

        return tag_indexed(self, tagger, weights=weights, backend=backend, device=device, min_score=min_score,
                           workers=workers, progress=progress)

    def untagged(self, tagger: str) -> list[tuple[int, str, str]]:
        """(id, path on disk, sha256) of the indexed images ``tagger`` has not looked at, in id order."""
        with self.engine.connect() as conn:
            done = select(Tagged.image_id).where(Tagged.tagger == tagger)
            ids = conn.execute(select(Image.id, Image.sha256).where(Image.status == OK, Image.id.not_in(done))
                               .order_by(Image.id)).all()
        records = self._records(i for i, _ in ids)
        return [(i, records[i].abspath, sha) for i, sha in ids]

    def taggers(self) -> dict[str, dict]:
        """The taggers that wrote into this index -> their stored specs."""
        with self.engine.connect() as conn:
            return {name: json.loads(spec) for name, spec in conn.execute(select(Tagger.name, Tagger.spec))}

    def tags(self, *, min_score: float = 0.0, tagger: str | None = None) -> list[dict]:
        """Images per label (most first), counting detections at or above ``min_score``
        (of ``tagger`` only, if given)."""
        check_min_score(min_score)
        query = (select(DetectionRow.tagger, DetectionRow.label, func.count(func.distinct(DetectionRow.image_id)))
                 .join(Image, Image.id == DetectionRow.image_id)
                 .where(Image.status == OK, DetectionRow.score >= min_score)
                 .group_by(DetectionRow.tagger, DetectionRow.label))
        if tagger is not None:
            query = query.where(DetectionRow.tagger == tagger)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return sorted(({"tagger": t, "label": label, "images": n} for t, label, n in rows),
                      key=lambda r: (-r["images"], r["label"], r["tagger"]))

    def tagged_ids(self, labels: list[str], *, min_score: float = 0.25, tagger: str | None = None) -> set[int]:
        """Ids of indexed images holding every one of ``labels`` at ``min_score`` or more
        (found by ``tagger``, if given; else by any tagger)."""
        check_min_score(min_score)
        with self.engine.connect() as conn:
            found = None
            for label in labels:  # bound parameters, one query per label, intersected
                query = (select(DetectionRow.image_id).join(Image, Image.id == DetectionRow.image_id)
                         .where(Image.status == OK, DetectionRow.label == label, DetectionRow.score >= min_score))
                if tagger is not None:
                    query = query.where(DetectionRow.tagger == tagger)
                ids = set(conn.execute(query).scalars())
                found = ids if found is None else found & ids
        return found or set()

    def with_tags(self, labels: list[str], *, min_score: float = 0.25, tagger: str | None = None) -> list[ImageRecord]:
        """Indexed images holding every one of ``labels`` (e.g. ["chair", "bed"]), in index order."""
        if not labels:
            raise InvalidArgument("give at least one tag")
        ids = sorted(self.tagged_ids(labels, min_score=min_score, tagger=tagger))
        records = self._records(ids)
        return [records[i] for i in ids]

    def detections(self, image_id: int, *, tagger: str | None = None) -> list[dict]:
        """What the taggers found in one indexed image, best first."""
        d = DetectionRow
        query = (select(d.tagger, d.label, d.score, d.x1, d.y1, d.x2, d.y2).where(d.image_id == image_id)
                 .order_by(d.score.desc()))
        if tagger is not None:
            query = query.where(d.tagger == tagger)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [{"tagger": t, "label": label, "score": score, "box": box} for t, label, score, *box in rows]

    # -- reports ----------------------------------------------------------------
    def report_clusters(self, run: str, out: str | os.PathLike) -> Path:
        """A static HTML page of ``run``: one row per cluster, medoid first; returns its path."""
        from .report import Tile, write_page  # noqa: PLC0415

        self._run_id(run)  # a clear error for an unknown run
        info = next(r for r in self.clusterings() if r["name"] == run)
        rows = []
        for c in self.clusters(run):
            tiles = [Tile(m.image, "medoid" if m.medoid else f"distance {m.distance:.4f}", m.medoid)
                     for m in self.cluster_members(run, c["cluster"])]
            rows.append((f"cluster {c['cluster']}: {c['size']} images, mean distance {c['mean_distance']}", tiles))
        scheme = "FasterPAM on every image" if info["scheme"] == "exact" else "CLARA (sampled FasterPAM)"
        summary = f"{info['images']} images by {info['by']}, k={info['k']}, {scheme}, made {info['created']}"
        return write_page(out, f"simsearch clusters: {run}", summary, rows)

    def report_duplicates(self, out: str | os.PathLike, **options) -> Path:
        """A static HTML page of the duplicate groups (``options`` as for ``duplicates``), keeper first."""
        from .report import Tile, write_page  # noqa: PLC0415

        groups = self.duplicates(**options)
        rows = [(f"group {n}: {len(g)} images", [Tile(r, f"{r.width}x{r.height}, {r.size:,} bytes" + (
            ", keep" if i == 0 else ""), i == 0) for i, r in enumerate(g)]) for n, g in enumerate(groups, 1)]
        summary = f"{len(groups)} groups, {sum(len(g) for g in groups)} images, by {options.get('by', 'auto')}"
        return write_page(out, "simsearch duplicates", summary, rows)

    def _run_id(self, run: str) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(select(ClusteringRun.id).where(ClusteringRun.name == run)).scalar()
        if found is None:
            raise InvalidArgument(f"no clustering named {run!r}; see simsearch clusters")
        return found

    def _keep_first(self, group: list[int]) -> list[ImageRecord]:
        records = self._records(group)
        # keep the largest image, then the largest file, then the oldest, then by path
        return sorted(records.values(), key=lambda r: (-(r.width * r.height), -r.size, r.mtime_ns, r.path))

    def failures(self) -> list[dict]:
        roots = self._root_paths()
        with self.engine.connect() as conn:
            rows = conn.execute(select(Failure).order_by(Failure.id)).all()
        return [
            {"path": roots[r.root_id][1] + r.relpath, "kind": r.kind, "message": r.message} for r in rows
        ]

    def stats(self) -> dict:
        """Counts of images, failures, removed files, hashes, embeddings (per model), tagged images (per
        tagger), and sizes on disk."""
        with self.engine.connect() as conn:
            by_status = dict(conn.execute(select(Image.status, func.count()).group_by(Image.status)).all())
            failures = dict(conn.execute(select(Failure.kind, func.count()).group_by(Failure.kind)).all())
            hashed = conn.execute(select(func.count()).where(Image.phash.is_not(None), Image.status == OK)).scalar()
            image_bytes = conn.execute(select(func.coalesce(func.sum(Image.size), 0)).where(Image.status == OK)).scalar()
            roots = conn.execute(select(func.count()).select_from(Root)).scalar()
            embedded = dict(conn.execute(
                select(Embedding.model, func.count()).join(Image, Image.id == Embedding.image_id)
                .where(Image.status == OK).group_by(Embedding.model)).all())
            tagged = dict(conn.execute(
                select(Tagged.tagger, func.count()).join(Image, Image.id == Tagged.image_id)
                .where(Image.status == OK).group_by(Tagged.tagger)).all())
        return {
            "index": str(self.directory),
            "roots": roots,
            "images": by_status.get(OK, 0),
            "failed": by_status.get(FAILED, 0),
            "removed": by_status.get(REMOVED, 0),
            "failures": sum(failures.values()),
            "failure_kinds": failures,
            "hashes": hashed * len(HASH_METHODS),
            "embeddings": embedded,
            "tagged": tagged,
            "image_bytes": int(image_bytes),
            "index_bytes": store.dir_size(self.directory),
        }


def _check_similarity(min_similarity: float | None) -> None:
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise InvalidArgument(f"min similarity must be between -1 and 1, got {min_similarity}")


def _dihedral(rgb, transform: tuple[bool, bool, bool]):
    """``rgb`` under one of ``hashing.DIHEDRAL``'s transforms (transpose, flip rows, flip columns)."""
    from PIL import Image as PILImage  # noqa: PLC0415

    transpose, flip_rows, flip_cols = transform
    out = rgb.transpose(PILImage.Transpose.TRANSPOSE) if transpose else rgb
    if flip_rows:
        out = out.transpose(PILImage.Transpose.FLIP_TOP_BOTTOM)
    if flip_cols:
        out = out.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    return out


def _dihedral_edges(packed: list[bytes | None], max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs whose pHash is within ``max_distance`` under some rotation or flip of one of them."""
    n_variants = len(DIHEDRAL)
    have = [r for r, p in enumerate(packed) if p is not None]
    if not have:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.frombuffer(b"".join(packed[r] for r in have), dtype="<u8").astype(np.uint64)
    i, j = hamming_edges(codes, max_distance)
    owner = np.asarray(have, dtype=np.int64)
    a, b = owner[i // n_variants], owner[j // n_variants]
    keep = a != b
    return a[keep], b[keep]


def _check_distance(max_distance: int | None) -> None:
    if max_distance is not None and not 0 <= max_distance < HASH_BITS:
        raise InvalidArgument(f"max distance must be between 0 and {HASH_BITS - 1}, got {max_distance}")


def _chunks(items: list) -> Iterator[list]:
    """Slices short enough for one IN (...) clause."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _failure_row(root_id: int, raw: bytes, kind: str, message: str, stamp: float) -> dict:
    return {"root_id": root_id, "relpath": raw.decode("utf-8", "backslashreplace"), "relpath_raw": raw,
            "kind": kind, "message": message, "recorded_at": stamp}


def _by_keys(rows: list[dict]) -> list[list[dict]]:
    """Rows grouped by their key sets, so each group is one executemany."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())


def _same_keys(rows: list[dict]) -> list[dict]:
    keys = set().union(*rows)
    return [{k: row.get(k) for k in keys} for row in rows]


def _equal_edges(values: list) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking rows with equal, non-null values (a chain through each group)."""
    keyed = sorted((v, i) for i, v in enumerate(values) if v is not None)
    i, j = [], []
    for (va, ia), (vb, ib) in zip(keyed, keyed[1:]):
        if va == vb:
            i.append(ia)
            j.append(ib)
    return np.array(i, dtype=np.int64), np.array(j, dtype=np.int64)
