"""Finding the files to index: folders walked recursively, single files, file lists."""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass, field

from simsearch.names import SKIP_MARKER

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .gif .webp .bmp .dib .tif .tiff .heic .heif .avif .ico .ppm .pgm .pbm .pnm "
    ".tga .mpo .jp2 .j2k".split()
)


@dataclass(frozen=True)
class Entry:
    """A regular file found under a root."""

    relpath: str  # relative to the root; str with surrogate escapes for non-UTF-8 bytes
    size: int
    mtime_ns: int


@dataclass
class Scan:
    """What one root holds: files to consider, entries that could not be read, files passed over."""

    root: str
    entries: list[Entry] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (relpath, kind, message)
    skipped: int = 0  # files whose extension is not an image's
    # the folders walked whole, relative to the root ("": the root itself): a file the index holds under one of
    # them that was not found is really gone
    walked: list[str] = field(default_factory=list)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # relpath -> (device, inode) of its file
    links: set[str] = field(default_factory=set)  # the relpaths that are symbolic links


def scan_roots(paths: list[str], *, all_files: bool = False, gone: set[str] = frozenset(),
               roots: list[str] = ()) -> list[Scan]:
    """One ``Scan`` per root. A path inside one of the index's ``roots`` (a subfolder or a file in it, reached
    by any path: a link to it too) is scanned under that root, so no file is indexed twice; any other folder is
    its own root, and another file's root is its folder. ``gone``: indexed folders that no longer exist, each a
    root found empty (so its files are marked removed)."""
    by_root: dict[str, Scan] = {}
    where = Placer(roots)
    for path in paths:
        full = os.path.abspath(path)
        if full in gone:
            by_root.setdefault(full, Scan(full, walked=[""]))
        elif os.path.isdir(full):
            root, rel = where.place(full)
            root, rel = (root, rel) if root is not None else (full, "")
            _walk(by_root.setdefault(root, Scan(root)), rel, all_files)
        else:  # a file: its folder is placed, so a link to a file is taken as the link, like any listed file
            folder, name = os.path.split(full)
            root, rel = where.place(folder)
            root, rel = (root, os.path.join(rel, name) if rel else name) if root is not None else (folder, name)
            _add_file(by_root.setdefault(root, Scan(root)), rel, all_files=True)
    # a link to a file found as itself is the same file: only the file is listed
    targets = {inode for scan in by_root.values() for rel, inode in scan.files.items() if rel not in scan.links}
    for scan in by_root.values():
        entries = {e for e in scan.entries if e.relpath not in scan.links or scan.files[e.relpath] not in targets}
        scan.entries = sorted(entries, key=lambda e: os.fsencode(e.relpath))
    return list(by_root.values())


def new_roots(paths: list[str], roots: list[str]) -> list[str]:
    """The folders among ``paths`` that no root of ``roots`` holds, outermost first, leaving out those inside
    another of them: the roots a run adds."""
    where = Placer(roots)
    added: list[str] = []
    for full in sorted({os.path.abspath(p) for p in paths if os.path.isdir(p)}, key=len):
        if where.place(full)[0] is None:
            where.add(full)
            added.append(full)
    return added


class Placer:
    """Which root holds a path: the outermost of ``roots`` at or above it, compared as real paths (links
    resolved; a root left inside another holds only rows the outer one lists too: see
    ``write.merge_nested_roots``). Each folder's real path is found once, so a file list over many folders
    costs one lookup per folder, not one per root."""

    def __init__(self, roots: list[str]):
        self._by_real: dict[str, str] = {}
        self._real = functools.lru_cache(maxsize=65_536)(os.path.realpath)
        for root in roots:
            self.add(root)

    def add(self, root: str) -> None:
        self._by_real.setdefault(self._real(root), root)

    def place(self, full: str) -> tuple[str | None, str]:
        """The root holding the absolute folder path ``full`` and ``full``'s path under it ("" for the root
        itself); (None, "") if no root holds it."""
        real = above = self._real(full)
        found = None
        while True:
            if above in self._by_real:
                found = above
            if above == os.path.dirname(above):
                break
            above = os.path.dirname(above)
        if found is None:
            return None, ""
        return self._by_real[found], "" if found == real else os.path.relpath(real, found)


def read_file_list(list_path: str) -> list[str]:
    """Paths from a text file, one a line; blank lines and '#' comments are ignored."""
    with open(list_path, "rb") as fh:
        lines = [os.fsdecode(line.rstrip(b"\r\n")) for line in fh]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _walk(scan: Scan, within: str, all_files: bool) -> None:
    """Add the files under the root's folder ``within`` ("": the whole root)."""
    def on_error(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename, scan.root) if exc.filename else "."
        scan.errors.append((rel, "unreadable", f"cannot list folder: {exc.strerror or exc}"))

    scan.walked.append(within)
    # symlinked folders are not followed: no loops, no file counted twice
    for dirpath, dirnames, filenames in os.walk(os.path.join(scan.root, within), onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if not os.path.exists(os.path.join(dirpath, d, SKIP_MARKER)))
        reldir = os.path.relpath(dirpath, scan.root)
        for name in sorted(filenames):
            _add_file(scan, name if reldir == "." else os.path.join(reldir, name), all_files)


def _add_file(scan: Scan, relpath: str, all_files: bool) -> None:
    if not all_files and os.path.splitext(relpath)[1].lower() not in IMAGE_EXTENSIONS:
        scan.skipped += 1
        return
    full = os.path.join(scan.root, relpath)
    try:
        st = os.stat(full)
    except OSError as exc:
        kind = "unreadable"
        reason = "symlink loop" if exc.errno == 40 else "broken symlink" if os.path.islink(full) else exc.strerror
        scan.errors.append((relpath, kind, f"cannot stat: {reason}"))
        return
    if not stat.S_ISREG(st.st_mode):
        scan.errors.append((relpath, "not_a_file", "not a regular file (device, FIFO or socket)"))
        return
    scan.entries.append(Entry(relpath, st.st_size, st.st_mtime_ns))
    scan.files[relpath] = (st.st_dev, st.st_ino)
    if os.path.islink(full):
        scan.links.add(relpath)
