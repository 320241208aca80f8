"""Finding the files to index: folders walked recursively, single files, file lists."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

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
    complete: bool = True  # the whole folder was walked, so missing files are really gone
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # relpath -> (device, inode) of its file
    links: set[str] = field(default_factory=set)  # the relpaths that are symbolic links


def scan_roots(paths: list[str], *, all_files: bool = False, gone: set[str] = frozenset()) -> list[Scan]:
    """One ``Scan`` per root. A folder is its own root; a file's root is its folder
    and only that file is considered there. ``gone``: indexed folders that no longer exist, each a
    root found empty (so its files are marked removed)."""
    by_root: dict[str, Scan] = {}
    for path in paths:
        full = os.path.abspath(path)
        if full in gone:
            by_root.setdefault(full, Scan(full))
        elif os.path.isdir(full):
            scan = by_root.setdefault(full, Scan(full))
            _walk(scan, all_files)
        else:
            root, name = os.path.split(full)
            scan = by_root.setdefault(root, Scan(root, complete=False))
            _add_file(scan, name, all_files=True)
    # a link to a file found as itself is the same file: only the file is listed
    targets = {inode for scan in by_root.values() for rel, inode in scan.files.items() if rel not in scan.links}
    for scan in by_root.values():
        entries = {e for e in scan.entries if e.relpath not in scan.links or scan.files[e.relpath] not in targets}
        scan.entries = sorted(entries, key=lambda e: os.fsencode(e.relpath))
    return list(by_root.values())


def read_file_list(list_path: str) -> list[str]:
    """Paths from a text file, one a line; blank lines and '#' comments are ignored."""
    with open(list_path, "rb") as fh:
        lines = [os.fsdecode(line.rstrip(b"\r\n")) for line in fh]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _walk(scan: Scan, all_files: bool) -> None:
    def on_error(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename, scan.root) if exc.filename else "."
        scan.errors.append((rel, "unreadable", f"cannot list folder: {exc.strerror or exc}"))

    # symlinked folders are not followed: no loops, no file counted twice
    for dirpath, dirnames, filenames in os.walk(scan.root, onerror=on_error):
        dirnames.sort()
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
