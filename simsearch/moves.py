"""Moving duplicates aside with a manifest, and undoing it. Nothing is ever deleted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import InvalidArgument
from .schema import REMOVED


def move_duplicates(index, groups, target: str | os.PathLike, manifest: str | os.PathLike) -> list[dict]:
    """Move every member but the first of each group under ``target`` (keeping its
    path relative to its root) and append one JSON line per move to ``manifest``,
    written as it goes, so even an interrupted move can be undone."""
    target = Path(target).resolve()
    moved, ids = [], []
    with open(manifest, "a") as log:
        for group in groups:
            keep = group[0]
            for rec in group[1:]:
                dest = _free_path(target / rec.path.lstrip("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(rec.abspath, dest)
                entry = {"from": rec.abspath, "to": str(dest), "sha256": rec.sha256, "kept": keep.abspath}
                # ASCII JSON keeps undecodable path bytes as \udcXX escapes, which load back exactly
                log.write(json.dumps(entry) + "\n")
                log.flush()
                moved.append(entry)
                ids.append(rec.id)
    from simsearch.indexer.write import set_status  # noqa: PLC0415 - moving files aside is a write

    with index.atomic() as conn:
        set_status(conn, ids, REMOVED)
    return moved


def undo(manifest: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Move files back; returns (paths restored, problems). Never overwrites."""
    try:
        lines = Path(manifest).read_text().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read manifest {manifest}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"{manifest} is not a simsearch move manifest") from None
    restored, problems = [], []
    for line in reversed([l for l in lines if l.strip()]):
        try:
            entry = json.loads(line)
            src, dest = entry["to"], entry["from"]
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument(f"{manifest} is not a simsearch move manifest") from None
        if os.path.lexists(dest):
            problems.append(f"{dest} exists; left {src} where it is")
        elif not os.path.exists(src):
            problems.append(f"{src} is missing")
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(src, dest)
            restored.append(dest)
    return restored, problems


def _free_path(path: Path) -> Path:
    if not os.path.lexists(path):
        return path
    n = 1
    while os.path.lexists(path.with_name(f"{path.stem}.{n}{path.suffix}")):
        n += 1
    return path.with_name(f"{path.stem}.{n}{path.suffix}")
