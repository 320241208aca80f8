"""Reading an index: image records, hash codes, vectors, settings and counts. The
query modules (search, duplicates, clusters, tags, reports) read through a ``Reads``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select

from . import store
from .errors import InvalidArgument
from .hashing import check_method, to_uint64
from .names import DEFAULT_EMBEDDER
from .schema import (
    FAILED,
    HASH_METHODS,
    OK,
    REMOVED,
    Embedder,
    Embedding,
    Failure,
    Image,
    Root,
    Tagged,
)

_IN_CHUNK = 900  # ids per IN (...) clause
_VECTOR_PAGE = 10_000  # vectors read per page (51 MB of 1280-d float32 at a time)


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
    picture_width: int | None = None  # without uniform margins (simsearch.margins); None: indexed before them
    picture_height: int | None = None

    @property
    def picture(self) -> tuple[int, int]:
        """The picture's width and height without uniform margins or filled corners (the image's own size where
        the index was made before they were measured)."""
        if self.picture_width is None:
            return self.width, self.height
        return self.picture_width, self.picture_height

    @property
    def max_pixels(self) -> int:
        """The pixel limit to read the file back under: the indexer took it at this size, perhaps under a
        raised ``--max-pixels``, so no later reader (verification, thumbnails) refuses it for its size."""
        from .imageio import DEFAULT_MAX_PIXELS  # noqa: PLC0415 - reading records needs no Pillow

        return max(DEFAULT_MAX_PIXELS, (self.width or 0) * (self.height or 0))


def under_roots(roots: dict[int, bytes], path: str) -> list[tuple[int, bytes]]:
    """(root id, path relative to it as raw bytes) for each root (raw bytes) that holds ``path`` on disk."""
    absolute = os.fsencode(os.path.abspath(path))
    return [(root_id, absolute[len(raw) + 1 :]) for root_id, raw in roots.items() if absolute.startswith(raw + b"/")]


class Reads:
    """Read access to one index database (and the folder its derived files live in)."""

    def __init__(self, engine: Engine, directory: Path, read_only: bool = False):
        self.engine = engine
        self.directory = directory
        self.read_only = read_only  # derived FAISS files are built in memory, never written
        self._roots: dict[int, tuple[str, str]] | None = None
        self._loaded: dict[tuple, object] = {}  # FAISS indexes this process loaded, by name and data version

    # -- settings -----------------------------------------------------------
    def meta(self, key: str, default: str) -> str:
        with self.engine.connect() as conn:
            return store.get_meta(conn, key, default)

    def metas(self, defaults: dict[str, str]) -> dict[str, str]:
        """Several settings in one query (``store.get_metas``)."""
        with self.engine.connect() as conn:
            return store.get_metas(conn, defaults)

    def data_version(self) -> int:
        return int(self.meta("data_version", "0"))

    @property
    def full_decode(self) -> bool:
        return self.meta("decode", "draft") == "full"

    # -- records ------------------------------------------------------------
    def root_paths(self) -> dict[int, tuple[str, str]]:
        """root id -> (filesystem path, display prefix: '' for a lone root)."""
        if self._roots is None:
            with self.engine.connect() as conn:
                rows = conn.execute(select(Root.id, Root.path_raw, Root.path)).all()
            single = len(rows) == 1
            self._roots = {rid: (os.fsdecode(raw), "" if single else disp + "/") for rid, raw, disp in rows}
        return self._roots

    def images_per_root(self) -> dict[int, int]:
        """root id -> how many indexed images (status ok) it holds."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(Image.root_id, func.count()).where(Image.status == OK)
                                     .group_by(Image.root_id)).all())

    def records(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        ids = list(ids)
        roots = self.root_paths()
        out: dict[int, ImageRecord] = {}
        cols = (Image.id, Image.root_id, Image.relpath, Image.relpath_raw, Image.size, Image.width,
                Image.height, Image.format, Image.mtime_ns, Image.sha256, Image.picture_width, Image.picture_height)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                for row in conn.execute(select(*cols).where(Image.id.in_(ids[start : start + _IN_CHUNK]))):
                    if row.root_id not in roots:  # a root another process added since they were read (a server)
                        self._roots = None
                        roots = self.root_paths()
                    root, prefix = roots[row.root_id]
                    out[row.id] = ImageRecord(
                        row.id, prefix + row.relpath, os.path.join(root, os.fsdecode(row.relpath_raw)),
                        row.size, row.width, row.height, row.format, row.mtime_ns, row.sha256,
                        row.picture_width, row.picture_height,
                    )
        return out

    def image_id(self, image) -> int:
        """An indexed image's id, from its id or its path (as listed, or on disk)."""
        if isinstance(image, int):
            return image
        found = self.image_id_at(os.fspath(image))
        if found is None:
            raise InvalidArgument(f"{os.fspath(image)} is not in the index; index it first")
        return found

    def image_id_at(self, path: str) -> int | None:
        """The id of the indexed image at ``path``: as listed (relative to its root, or with the
        root's prefix), or a path to the file on disk; None if none is."""
        roots = self.root_paths()
        conditions = [(root_id, Image.relpath == path[len(prefix):]) for root_id, (_, prefix) in roots.items()
                      if path.startswith(prefix) and not os.path.isabs(path)]
        conditions += [(root_id, Image.relpath_raw == rel) for root_id, rel in
                       under_roots({rid: os.fsencode(root) for rid, (root, _) in roots.items()}, path)]
        with self.engine.connect() as conn:
            for root_id, condition in conditions:
                found = conn.execute(select(Image.id).where(Image.root_id == root_id, Image.status == OK,
                                                            condition)).scalar()
                if found is not None:
                    return found
        return None

    def ordered(self, ids: list[int]) -> list[ImageRecord]:
        records = self.records(ids)
        return [records[i] for i in ids]

    def image_ids(self, among: list[int] | None = None) -> list[int]:
        """Ids of the indexed images (status ok), in order; with ``among``, only those of these ids."""
        query = select(Image.id).where(Image.status == OK).order_by(Image.id)
        with self.engine.connect() as conn:
            if among is None:
                return conn.execute(query).scalars().all()
            return sorted(i for start in range(0, len(among), _IN_CHUNK)
                          for i in conn.execute(query.where(Image.id.in_(among[start : start + _IN_CHUNK]))).scalars())

    def hash_codes(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        column = getattr(Image, check_method(method))
        with self.engine.connect() as conn:
            rows = conn.execute(select(Image.id, column).where(Image.status == OK).order_by(Image.id)).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, to_uint64([r[1] for r in rows])

    # -- embeddings ---------------------------------------------------------
    def embedding_models(self) -> dict[str, dict]:
        """name -> stored spec (with the weights' sha256) of each embedder the index holds vectors of."""
        with self.engine.connect() as conn:
            return {name: json.loads(spec) for name, spec in conn.execute(select(Embedder.name, Embedder.spec))}

    def model(self, model: str | None) -> str:
        """The embedder to use: ``model`` if the index holds its vectors, else the index's default."""
        models = self.embedding_models()
        if model is None:
            if not models:
                raise InvalidArgument.hinted("this index has no embeddings; add them with {}",
                                             'Index.add(paths, embed="efficientnet_lite0")', "simsearch index PATH --embed")
            return DEFAULT_EMBEDDER if DEFAULT_EMBEDDER in models else sorted(models)[0]
        if model not in models:
            have = ", ".join(models) or "none"
            raise InvalidArgument.hinted(f"this index has no {model} embeddings (it has: {have}); add them with {{}}",
                                         f'Index.add(paths, embed="{model}")', f"simsearch index PATH --embed {model}")
        return model

    def vectors(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, float32 vectors) of the indexed images' ``model`` embeddings, in id order."""
        query = (select(Embedding.image_id, Embedding.vector).join(Image, Image.id == Embedding.image_id)
                 .where(Embedding.model == model, Image.status == OK))
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(query.subquery())).scalar()
            dim = int(json.loads(conn.execute(select(Embedder.spec).where(Embedder.name == model)).scalar())["dim"])
            ids = np.empty(count, dtype=np.int64)
            vectors = np.empty((count, dim), dtype=np.float32)
            # streamed into preallocated arrays, a page at a time: 1M x 1280 floats is 5 GB, so never hold it twice.
            # Ordered by the image's id, SQLite walks the images in that order and reads no vector twice; ordered
            # by the embedding's, it sorted every vector first (100k: 3.2 s to 0.9 s with the pages)
            streamed = conn.execution_options(stream_results=True, yield_per=_VECTOR_PAGE)
            n = 0
            for page in streamed.execute(query.order_by(Image.id)).partitions():
                ids[n : n + len(page)] = [image_id for image_id, _ in page]
                vectors[n : n + len(page)] = np.frombuffer(b"".join(blob for _, blob in page), "<f4").reshape(-1, dim)
                n += len(page)
        return ids, vectors

    def vector_source(self, model: str, chunk: int | None = None):
        """``model``'s vectors for an index build, read from the database a chunk at a time (keyset pages
        in id order, so any database streams them) and sampled at random for training."""
        from .faiss_store import CHUNK_VECTORS, VectorSource, sample_rows  # noqa: PLC0415

        chunk = chunk or CHUNK_VECTORS
        embedded = (select(Embedding.image_id).join(Image, Image.id == Embedding.image_id)
                    .where(Embedding.model == model, Image.status == OK))
        with self.engine.connect() as conn:
            ids = np.fromiter(conn.execute(embedded.order_by(Embedding.image_id)).scalars(), np.int64)
            dim = int(json.loads(conn.execute(select(Embedder.spec).where(Embedder.name == model)).scalar())["dim"])

        def rows(query) -> tuple[np.ndarray, np.ndarray]:
            with self.engine.connect() as conn:
                found = conn.execute(query).all()
            return (np.fromiter((r[0] for r in found), np.int64, len(found)),
                    np.frombuffer(b"".join(r[1] for r in found), "<f4").reshape(len(found), dim))

        vectors = select(Embedding.image_id, Embedding.vector).where(Embedding.model == model)

        def chunks():
            for start in range(0, len(ids), chunk):
                page = ids[start : start + chunk]
                got, found = rows(vectors.where(Embedding.image_id.between(int(page[0]), int(page[-1])))
                                  .order_by(Embedding.image_id))
                keep = np.isin(got, page)  # between the two ends: images removed since are not in ``ids``
                yield got[keep], found[keep]

        def sample(size: int, seed: int) -> np.ndarray:
            picked = ids[sample_rows(len(ids), size, seed)]
            parts = [rows(vectors.where(Embedding.image_id.in_(part.tolist())).order_by(Embedding.image_id))[1]
                     for part in np.array_split(picked, max(1, -(-len(picked) // _IN_CHUNK)))]
            return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

        return VectorSource(len(ids), dim, chunks, sample)

    # -- derived indexes ----------------------------------------------------
    def binary_index(self, method: str):
        from .faiss_store import binary_index  # noqa: PLC0415 - FAISS loads only when searching

        version = self.data_version()
        return self._kept(("hash", method, version), lambda: binary_index(
            self.directory / "faiss", method, version, lambda: self.hash_codes(method), save=not self.read_only))

    def vector_index(self, model: str):
        from .faiss_store import vector_index  # noqa: PLC0415

        settings = self.metas({"data_version": "0", "ann": "auto"})
        version, ann = int(settings["data_version"]), settings["ann"]
        return self._kept(("vectors", model, ann, version), lambda: vector_index(
            self.directory / "faiss", model, ann, version, lambda: self.vector_source(model), save=not self.read_only))

    def _kept(self, key: tuple, load):
        """A derived index loaded once per data version: a long-lived process (a server, a loop of API
        queries) reads its files once, and any write to the index makes it load the new one."""
        if key not in self._loaded:
            self._loaded = {k: v for k, v in self._loaded.items() if k[:-1] != key[:-1]}  # the stale one goes
            self._loaded[key] = load()
        return self._loaded[key]

    # -- counts -------------------------------------------------------------
    def failures(self) -> list[dict]:
        roots = self.root_paths()
        with self.engine.connect() as conn:
            rows = conn.execute(select(Failure).order_by(Failure.id)).all()
        return [{"path": roots[r.root_id][1] + r.relpath, "kind": r.kind, "message": r.message} for r in rows]

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
