"""The write layer: every row the write side puts into an index goes through these
functions, each taking an open connection, so a caller groups them into one
transaction (``with engine.begin() as conn``). Nothing here calls the read side's
``Index`` façade."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from sqlalchemy import Connection, and_, bindparam, exists, select

from simsearch import store
from simsearch.errors import InvalidArgument
from simsearch.schema import (
    OK,
    REMOVED,
    Detection,
    Embedder,
    Embedding,
    Failure,
    Image,
    Root,
    Tagged,
    Tagger,
)

_IN_CHUNK = 900  # ids per IN (...) clause


class KnownFile(NamedTuple):
    """What the index holds of a file under a root."""

    id: int
    size: int
    mtime_ns: int
    sha256: str | None
    status: str
    complete: bool  # False for a decoded image that lacks a feature this run computes
    pixels: int  # width x height as indexed (0: never decoded)


class Untagged(NamedTuple):
    id: int
    path: str  # on disk
    sha256: str
    pixels: int  # width x height as indexed


def chunks(items: list) -> Iterator[list]:
    """Slices short enough for one IN (...) clause."""
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def bump_version(conn: Connection) -> None:
    """Mark the data changed, so derived FAISS indexes are rebuilt."""
    store.set_meta(conn, "data_version", str(int(store.get_meta(conn, "data_version", "0")) + 1))


def root_id(conn: Connection, path: str) -> int:
    raw = os.fsencode(path)
    found = conn.execute(select(Root.id).where(Root.path_raw == raw)).scalar()
    if found is not None:
        return found
    display = raw.decode("utf-8", "backslashreplace")
    return conn.execute(Root.__table__.insert().values(path=display, path_raw=raw)).inserted_primary_key[0]


def merge_nested_roots(conn: Connection, new: list[str]) -> list[str]:
    """Add the roots a run brings (``new``) and merge every root that lies inside another (a folder indexed,
    then the folder above it; the same folder reached through a link) into the outer one: its images and
    failures move under the outer root, their paths prefixed with where it lies, and the root goes. An image
    the outer root already holds at that path keeps the outer row, and the inner row is marked removed
    (its root stays for it). So no file is listed twice. Returns the index's root paths."""
    for path in new:
        root_id(conn, path)
    rows = conn.execute(select(Root.id, Root.path_raw).order_by(Root.id)).all()
    real = {rid: os.path.realpath(os.fsdecode(raw)) for rid, raw in rows}
    first: dict[str, int] = {}
    for rid, path in real.items():
        first.setdefault(path, rid)
    for rid in sorted(real, key=lambda r: (-real[r].count("/"), -r)):  # the deepest first: chains merge inwards out
        outer, prefix = _outer(real[rid], rid, first)
        if outer is not None:
            _merge_root(conn, rid, outer, prefix)
    return indexed_roots(conn)


def indexed_roots(conn: Connection) -> list[str]:
    """The folders (or files' folders) the index was built from."""
    return [os.fsdecode(raw) for raw in conn.execute(select(Root.path_raw)).scalars()]


def _outer(path: str, rid: int, first: dict[str, int]) -> tuple[int | None, bytes]:
    """The root a root at the real ``path`` merges into (another root at the same real path, else the nearest
    root above it) and the prefix of its files' paths there."""
    if first[path] != rid:
        return first[path], b""
    above = os.path.dirname(path)
    while above != os.path.dirname(above):
        if above in first:
            return first[above], os.fsencode(os.path.relpath(path, above)) + b"/"
        above = os.path.dirname(above)
    return (first[above], os.fsencode(path.lstrip("/")) + b"/") if above in first else (None, b"")


def _merge_root(conn: Connection, inner: int, outer: int, prefix: bytes) -> None:
    listed = select(Image.id).where(Image.root_id == inner, Image.status != REMOVED).limit(1)
    if conn.execute(listed).first() is None and conn.execute(
            select(Failure.id).where(Failure.root_id == inner).limit(1)).first() is None:
        return  # merged already: only the rows the outer root held too are left, removed
    for table in (Image.__table__, Failure.__table__):
        taken = set(conn.execute(select(table.c.relpath_raw).where(table.c.root_id == outer)).scalars())
        rows = conn.execute(select(table.c.id, table.c.relpath_raw).where(table.c.root_id == inner)).all()
        moves = [{"_id": i, "raw": prefix + raw, "text": (prefix + raw).decode("utf-8", "backslashreplace")}
                 for i, raw in rows if prefix + raw not in taken]
        if moves:
            conn.execute(table.update().where(table.c.id == bindparam("_id")).values(
                root_id=outer, relpath_raw=bindparam("raw"), relpath=bindparam("text")), moves)
        clashes = [i for i, raw in rows if prefix + raw in taken]
        for chunk in chunks(clashes):
            if table is Image.__table__:
                conn.execute(table.update().where(table.c.id.in_(chunk)).values(status=REMOVED))
            else:
                conn.execute(table.delete().where(table.c.id.in_(chunk)))
    if conn.execute(select(Image.id).where(Image.root_id == inner).limit(1)).first() is None:
        conn.execute(Root.__table__.delete().where(Root.id == inner))
    bump_version(conn)


def root_ids(conn: Connection, paths: list[str]) -> dict[str, int]:
    """path -> root id of each of ``paths``, a root added where the index has none."""
    found = {os.fsdecode(raw): rid for rid, raw in conn.execute(select(Root.id, Root.path_raw))}
    return {path: found[path] if path in found else root_id(conn, path) for path in paths}


def _complete_features():
    """Whether an image row holds every feature decoding gives (rows indexed by an older version may lack
    the rotation hashes or the picture size: a run decodes them again)."""
    return and_(Image.phash_dihedral.is_not(None), Image.picture_width.is_not(None))


def known_files(conn: Connection, roots: list[int], model: str | None = None,
                tagger: str | None = None) -> dict[int, dict[bytes, KnownFile]]:
    """root id -> (relpath bytes -> ``KnownFile``) for the roots' files, a few queries for any number of
    roots. ``complete`` is False for a decoded image that lacks a feature of decoding, an embedding by
    ``model`` or tags by ``tagger``."""
    out: dict[int, dict[bytes, KnownFile]] = {root: {} for root in roots}
    for chunk in chunks(roots):
        in_roots = Image.root_id.in_(chunk)
        embedded = tagged = None
        if model is not None:
            embedded = set(conn.execute(select(Embedding.image_id).join(Image, Image.id == Embedding.image_id).where(
                in_roots, Embedding.model == model)).scalars())
        if tagger is not None:
            tagged = set(conn.execute(select(Tagged.image_id).join(Image, Image.id == Tagged.image_id).where(
                in_roots, Tagged.tagger == tagger)).scalars())
        rows = conn.execute(select(Image.root_id, Image.relpath_raw, Image.id, Image.size, Image.mtime_ns,
                                   Image.sha256, Image.status, _complete_features().label("features"),
                                   Image.width, Image.height).where(in_roots))
        for r in rows:
            complete = r.status != OK or (bool(r.features) and (embedded is None or r.id in embedded)
                                          and (tagged is None or r.id in tagged))
            out[r.root_id][r.relpath_raw] = KnownFile(r.id, r.size, r.mtime_ns, r.sha256, r.status, complete,
                                                      (r.width or 0) * (r.height or 0))
    return out


def indexed_content(conn: Connection, sizes: list[int], model: str | None, tagger: str | None) -> dict[int, dict]:
    """size -> {sha256: image id} of the indexed images of these sizes (ok, or removed since: a folder moved)
    whose stored features are complete for a run by ``model`` and ``tagger``: bytes equal to one of them
    can take its features without decoding."""
    query = select(Image.id, Image.size, Image.sha256).where(
        Image.status.in_((OK, REMOVED)), _complete_features(), Image.sha256.is_not(None))
    if model is not None:
        query = query.where(exists().where(Embedding.image_id == Image.id, Embedding.model == model))
    if tagger is not None:
        query = query.where(exists().where(Tagged.image_id == Image.id, Tagged.tagger == tagger))
    found: dict[int, dict] = {}
    for chunk in chunks(sorted(set(sizes))):
        for image_id, size, sha in conn.execute(query.where(Image.size.in_(chunk)).order_by(Image.id)):
            found.setdefault(size, {}).setdefault(sha, image_id)
    return found


def copy_features(conn: Connection, sources: list[int], targets: list[int]) -> None:
    """Give each target image every embedding and tag of its source (an image with the same bytes)."""
    drop_features(conn, targets)
    to: dict[int, list[int]] = {}
    for source, target in zip(sources, targets):
        to.setdefault(source, []).append(target)
    for chunk in chunks(sorted(to)):
        vectors = conn.execute(select(Embedding.image_id, Embedding.model, Embedding.vector)
                               .where(Embedding.image_id.in_(chunk))).all()
        _insert(conn, Embedding, [{"image_id": t, "model": m, "vector": v} for i, m, v in vectors for t in to[i]])
        looked = conn.execute(select(Tagged.image_id, Tagged.tagger).where(Tagged.image_id.in_(chunk))).all()
        _insert(conn, Tagged, [{"image_id": t, "tagger": tagger} for i, tagger in looked for t in to[i]])
        kept = ("tagger", "label", "score", "x1", "y1", "x2", "y2")
        found = conn.execute(select(Detection.image_id, *(getattr(Detection, k) for k in kept))
                             .where(Detection.image_id.in_(chunk)).order_by(Detection.id)).all()
        _insert(conn, Detection, [{"image_id": t, **{k: getattr(d, k) for k in kept}} for d in found
                                  for t in to[d.image_id]])


def _insert(conn: Connection, table, rows: list[dict]) -> None:
    if rows:
        conn.execute(table.__table__.insert(), rows)


def feature_columns(conn: Connection, ids: list[int]) -> dict[int, dict]:
    """image id -> the columns decoding gave it (digests, size in pixels, format, mode, hashes)."""
    names = ("sha256", "pixel_digest", "width", "height", "format", "mode", "phash", "dhash", "whash", "ahash",
             "phash_dihedral", "picture_width", "picture_height")
    out = {}
    for chunk in chunks(sorted(set(ids))):
        for row in conn.execute(select(Image.id, *(getattr(Image, n) for n in names)).where(Image.id.in_(chunk))):
            out[row.id] = {n: getattr(row, n) for n in names}
    return out


def write_files(conn: Connection, root: int, rows: list[dict], known: dict[bytes, KnownFile]) -> list[int]:
    """Insert or update image rows (keys: Image columns plus ``error``: (kind, message) or None)
    and keep the failures table in step: one row per failing path, none for a good one.
    Returns the rows' image ids, in order."""
    stamp = time.time()
    inserts, updates, failures, cleared = [], [], [], []
    for row in rows:
        raw = os.fsencode(row.pop("relpath"))
        error = row.pop("error")
        row.update(root_id=root, relpath_raw=raw, relpath=raw.decode("utf-8", "backslashreplace"), indexed_at=stamp)
        if raw in known:
            updates.append({"_id": known[raw].id, **row})
        else:
            inserts.append(row)
        cleared.append(raw)
        if error is not None:
            failures.append(_failure_row(root, raw, *error, stamp))
    _delete_failures(conn, root, cleared)
    if inserts:
        conn.execute(Image.__table__.insert(), _same_keys(inserts))
    table = Image.__table__
    for group in _by_keys(updates):
        values = {k: bindparam(k) for k in group[0] if k != "_id"}
        conn.execute(table.update().where(table.c.id == bindparam("_id")).values(values), group)
    if failures:
        conn.execute(Failure.__table__.insert(), failures)
    bump_version(conn)
    ids = {raw: known[raw].id for raw in cleared if raw in known}
    for chunk in chunks([raw for raw in cleared if raw not in known]):
        ids.update(conn.execute(select(Image.relpath_raw, Image.id).where(
            Image.root_id == root, Image.relpath_raw.in_(chunk))).all())
    return [ids[raw] for raw in cleared]


def use_embedder(conn: Connection, embedder) -> None:
    """Record the embedder's spec, or check that it is the one the index was built with."""
    _use_model(conn, Embedder, embedder.spec.name, embedder.stored_spec(), "embeddings")


def use_tagger(conn: Connection, tagger) -> None:
    """Record the tagger's spec, or check that it is the one that tagged the index."""
    _use_model(conn, Tagger, tagger.spec.name, tagger.stored_spec(), "tags")


def _use_model(conn: Connection, table, name: str, spec: str, what: str) -> None:
    stored = conn.execute(select(table.spec).where(table.name == name)).scalar()
    if stored is None:
        conn.execute(table.__table__.insert().values(name=name, spec=spec, created_at=time.time()))
    else:
        store.check_spec(json.loads(stored), json.loads(spec), name, what)


def write_embeddings(conn: Connection, model: str, ids: list[int], vectors) -> None:
    """Store (replace) one vector per image id."""
    drop_embeddings(conn, model, ids)
    if ids:
        rows = [{"image_id": i, "model": model, "vector": np.asarray(v, "<f4").tobytes()} for i, v in zip(ids, vectors)]
        conn.execute(Embedding.__table__.insert(), rows)


def drop_embeddings(conn: Connection, model: str | None, ids: list[int]) -> None:
    table = Embedding.__table__
    for chunk in chunks(ids):
        where = table.c.image_id.in_(chunk)
        conn.execute(table.delete().where(where if model is None else where & (table.c.model == model)))


def write_detections(conn: Connection, tagger: str, ids: list[int], found: list[list]) -> None:
    """Store (replace) what ``tagger`` found in each image, and that it looked."""
    drop_detections(conn, tagger, ids)
    rows = [{"image_id": i, "tagger": tagger, "label": d.label, "score": d.score,
             "x1": d.box[0], "y1": d.box[1], "x2": d.box[2], "y2": d.box[3]}
            for i, dets in zip(ids, found) for d in dets]
    if rows:
        conn.execute(Detection.__table__.insert(), rows)
    if ids:
        conn.execute(Tagged.__table__.insert(), [{"image_id": i, "tagger": tagger} for i in ids])


def drop_detections(conn: Connection, tagger: str | None, ids: list[int]) -> None:
    for table in (Detection.__table__, Tagged.__table__):
        for chunk in chunks(ids):
            where = table.c.image_id.in_(chunk)
            conn.execute(table.delete().where(where if tagger is None else where & (table.c.tagger == tagger)))


def drop_features(conn: Connection, ids: list[int]) -> None:
    """Forget every embedding and tag of images whose bytes changed (or that no longer decode)."""
    drop_embeddings(conn, None, ids)
    drop_detections(conn, None, ids)


def record_errors(conn: Connection, root: int, errors: list[tuple[str, str, str]]) -> None:
    """Failures of entries that are not files to decode (unlistable folders, broken links)."""
    stamp = time.time()
    raws = [os.fsencode(rel) for rel, _, _ in errors]
    _delete_failures(conn, root, raws)
    if errors:
        conn.execute(Failure.__table__.insert(), [
            _failure_row(root, raw, kind, message, stamp) for raw, (_, kind, message) in zip(raws, errors)
        ])


def set_status(conn: Connection, ids: list[int], status: str) -> None:
    """Mark images removed (gone or moved aside) or ok again (back, unchanged)."""
    for chunk in chunks(ids):
        conn.execute(Image.__table__.update().where(Image.id.in_(chunk)).values(status=status))
    if ids:
        bump_version(conn)


def untagged(conn: Connection, tagger: str) -> list[Untagged]:
    """The indexed images ``tagger`` has not looked at, in id order."""
    roots = dict(conn.execute(select(Root.id, Root.path_raw)).all())
    done = select(Tagged.image_id).where(Tagged.tagger == tagger)
    rows = conn.execute(select(Image.id, Image.root_id, Image.relpath_raw, Image.sha256, Image.width, Image.height)
                        .where(Image.status == OK, Image.id.not_in(done)).order_by(Image.id)).all()
    return [Untagged(r.id, os.path.join(os.fsdecode(roots[r.root_id]), os.fsdecode(r.relpath_raw)), r.sha256,
                     (r.width or 0) * (r.height or 0)) for r in rows]


def decode_mode(conn: Connection, wanted: str | None) -> str:
    """The index's JPEG decode mode (``full`` or ``draft``), fixed by its first write."""
    stored = store.get_meta(conn, "decode")
    if stored is None:
        store.set_meta(conn, "decode", wanted or "draft")
        return wanted or "draft"
    if wanted is not None and wanted != stored:
        raise InvalidArgument(f"this index decodes JPEGs in {stored} mode; it cannot switch to {wanted} "
                              "(build a new index to change it)")
    return stored


def _delete_failures(conn: Connection, root: int, raws: list[bytes]) -> None:
    for chunk in chunks(raws):
        conn.execute(Failure.__table__.delete().where(Failure.root_id == root, Failure.relpath_raw.in_(chunk)))


def _failure_row(root: int, raw: bytes, kind: str, message: str, stamp: float) -> dict:
    return {"root_id": root, "relpath": raw.decode("utf-8", "backslashreplace"), "relpath_raw": raw,
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
