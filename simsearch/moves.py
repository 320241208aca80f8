"""Moving duplicates aside with a manifest, and undoing it. Nothing is ever deleted."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select

from .errors import InvalidArgument
from .reads import under_roots
from .runtime import file_sha256
from .schema import OK, REMOVED, Image, Root
from .store import mark_not_indexed


class Moves(NamedTuple):
    """What ``Index.move_duplicates`` and ``Index.move_group`` did."""

    moved: int  # files moved aside
    groups: int  # groups looked at
    skipped: list[tuple[str, str]]  # (path, why it stayed in place)


def prepare_target(target: str | os.PathLike, manifest: str | os.PathLike) -> Path:
    """The folder duplicates are moved to, made (and marked not to be indexed), and the manifest opened once for
    appending: a target or manifest that cannot be written fails here, before any duplicate is decided."""
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    mark_not_indexed(target, "duplicates moved aside by simsearch: simsearch undo MANIFEST puts them back")
    with open(manifest, "a"):
        pass
    return target


def move_duplicates(index, groups, target: str | os.PathLike, manifest: str | os.PathLike) -> Moves:
    """Move every member but the first of each group under ``target`` (keeping its
    path relative to its root) and append one JSON line per move to ``manifest``,
    written as it goes, so even an interrupted move can be undone.

    Only files that are still what was indexed move: a member gone, changed or unreadable since is
    left where it is, and so is every member of a group whose keeper is (moving them would leave no
    copy of the picture in place). A move the filesystem refuses is skipped too, and the run goes on;
    the index marks every file moved as removed even when the run is interrupted."""
    target = prepare_target(target, manifest)
    ids, skipped = [], []  # the images moved, the files left in place
    try:
        with open(manifest, "a") as log:
            for group in groups:
                keep = group[0]
                stale = _changed(keep)
                if stale:
                    skipped += [(rec.abspath, f"its keeper {keep.abspath} is {stale}") for rec in _movable(group)]
                    continue
                for rec in _movable(group):
                    entry, why = _move_one(rec, target, keep)
                    if entry is None:
                        skipped.append((rec.abspath, why))
                        continue
                    # ASCII JSON keeps undecodable path bytes as \udcXX escapes, which load back exactly
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    ids.append(rec.id)
    finally:
        from simsearch.indexer.write import set_status  # noqa: PLC0415 - moving files aside is a write

        with index.atomic() as conn:
            set_status(conn, ids, REMOVED)
    return Moves(len(ids), len(groups), skipped)


def _move_one(rec, target: Path, keep) -> tuple[dict | None, str]:
    """Move ``rec`` aside under ``target``: (its manifest entry, "") or (None, why it stayed)."""
    stale = _changed(rec)
    if stale:
        return None, stale
    dest = _free_path(target / rec.path.lstrip("/"))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(rec.abspath, dest)
    except OSError as exc:
        if os.path.lexists(rec.abspath) and os.path.lexists(dest):
            os.unlink(dest)  # a copy across filesystems that failed part way: the original stays
        return None, f"not moved: {exc.strerror or exc}"
    return {"from": rec.abspath, "to": str(dest), "sha256": rec.sha256, "kept": keep.abspath}, ""


def _changed(rec) -> str | None:
    """None where the file at ``rec.abspath`` is still the one indexed (same size and mtime, or same
    SHA-256); else what became of it."""
    try:
        st = os.stat(rec.abspath)
        if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
            return None
        return None if file_sha256(rec.abspath) == rec.sha256 else "changed since it was indexed"
    except FileNotFoundError:
        return "gone since it was indexed"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def _movable(group) -> list:
    """The members to move aside: never a file that the keeper is, or that a link in the group
    points to (moving it would leave the link dangling); a link itself may move."""
    pointed_at = {os.path.realpath(r.abspath) for r in group if os.path.islink(r.abspath)}
    pointed_at.add(os.path.realpath(group[0].abspath))
    return [r for r in group[1:] if os.path.islink(r.abspath) or os.path.realpath(r.abspath) not in pointed_at]


@dataclass(frozen=True)
class Move:
    """One checked manifest line: the file now at ``moved_to`` goes back to ``back_to``."""

    line: int
    moved_to: str
    back_to: str
    image_id: int
    done: bool  # already back in place (an earlier undo got this far)


def undo(index, manifest: str | os.PathLike) -> tuple[int, int]:
    """Move back every file the manifest records, after checking every line (see ``check_manifest``);
    one bad line refuses the whole manifest and nothing moves. The index marks each file indexed
    again as it goes back. Returns (files moved back, files found back already)."""
    with index.atomic() as conn:
        moves = check_manifest(conn, manifest)
    back = []
    try:
        for move in moves:
            if not move.done:
                os.makedirs(os.path.dirname(move.back_to), exist_ok=True)
                shutil.move(move.moved_to, move.back_to)
            back.append(move)
    finally:
        from simsearch.indexer.write import set_status  # noqa: PLC0415 - undoing a move is a write

        with index.atomic() as conn:
            set_status(conn, [m.image_id for m in back], OK)
    return sum(not m.done for m in back), sum(m.done for m in back)


def check_manifest(conn, manifest: str | os.PathLike) -> list[Move]:
    """Every line of a manifest, checked before anything moves: both paths absolute and normal
    (no ``..``); the original path is that of an image this index holds as moved away, with the
    recorded SHA-256; the file to move back is a regular file (not a link or a folder) with that
    SHA-256, and nothing is in its old place. Raises ``InvalidArgument`` naming the first bad line."""
    try:
        lines = Path(manifest).read_text().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read manifest {manifest}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"{manifest} is not a simsearch move manifest") from None
    roots = dict(conn.execute(select(Root.id, Root.path_raw)).all())
    moves = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                moves.append(_check_line(conn, roots, number, line))
            except _BadLine as exc:
                raise InvalidArgument(f"{manifest}, line {number}: {exc}; nothing was moved") from None
    return moves[::-1]  # the last move first


class _BadLine(Exception):
    pass


def _check_line(conn, roots: dict, number: int, line: str) -> Move:
    try:
        entry = json.loads(line)
        moved_to, back_to, sha256 = entry["to"], entry["from"], entry["sha256"]
    except (ValueError, KeyError, TypeError):
        raise _BadLine("not a simsearch move record") from None
    for path in (moved_to, back_to):
        if not isinstance(path, str) or not os.path.isabs(path) or os.path.normpath(path) != path:
            raise _BadLine(f"{path!r} is not an absolute, normal path")
    image_id, status = _recorded_image(conn, roots, back_to, sha256)
    if image_id is None:
        raise _BadLine(f"{back_to} is not an image of this index with that SHA-256")
    if not os.path.lexists(moved_to) and os.path.isfile(back_to) and file_sha256(back_to) == sha256:
        return Move(number, moved_to, back_to, image_id, done=True)
    if status != REMOVED:
        raise _BadLine(f"{back_to} was not moved out of this index")
    if os.path.islink(moved_to) or not os.path.isfile(moved_to):
        raise _BadLine(f"{moved_to} is missing or not a regular file")
    if os.path.lexists(back_to):
        raise _BadLine(f"{back_to} exists; it would be overwritten")
    if file_sha256(moved_to) != sha256:
        raise _BadLine(f"{moved_to} is not the file that was moved (its SHA-256 differs)")
    return Move(number, moved_to, back_to, image_id, done=False)


def _recorded_image(conn, roots: dict, path: str, sha256) -> tuple[int | None, str | None]:
    """(id, status) of this index's image at ``path`` with ``sha256``; (None, None) if it has none."""
    for root_id, rel in under_roots(roots, path):
        found = conn.execute(select(Image.id, Image.status).where(
            Image.root_id == root_id, Image.relpath_raw == rel, Image.sha256 == sha256)).first()
        if found is not None:
            return found.id, found.status
    return None, None


def _free_path(path: Path) -> Path:
    if not os.path.lexists(path):
        return path
    n = 1
    while os.path.lexists(path.with_name(f"{path.stem}.{n}{path.suffix}")):
        n += 1
    return path.with_name(f"{path.stem}.{n}{path.suffix}")
