"""Static HTML pages of clusters and duplicate groups: one row per group, thumbnails
written beside the page, opened from the file system with no server."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError
from .imageio import decode_file
from .store import mark_not_indexed

THUMB_SIZE = 160

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } .meta { color: #666; }
section { border-top: 1px solid #ddd; padding: .8em 0; }
h2 { font-size: 1em; margin: 0 0 .5em; }
.row { display: flex; flex-wrap: wrap; gap: .6em; }
figure { margin: 0; width: 170px; font-size: .75em; word-break: break-all; }
figure.lead img { outline: 3px solid #2a7; }
img { display: block; max-width: 160px; max-height: 160px; }
.missing { width: 160px; height: 100px; background: #eee; display: flex; align-items: center;
           justify-content: center; color: #a33; }
"""


# after loading, the page records on <body> how many thumbnails rendered and how many are broken
# (a browser-driven test reads these; a person sees nothing)
_CHECK = (
    "addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.imagesOk=i.filter(x=>x.complete&&x.naturalWidth>0).length;"
    "document.body.dataset.imagesBroken=i.filter(x=>!(x.complete&&x.naturalWidth>0)).length;});"
)


@dataclass(frozen=True)
class Tile:
    """One image on the page: its record, a caption, and whether it leads its row."""

    image: object  # simsearch.ImageRecord
    caption: str
    lead: bool = False


def write_page(out: str | os.PathLike, title: str, summary: str, rows: list[tuple[str, list[Tile]]]) -> Path:
    """Write ``out/index.html`` and ``out/thumbs/``; returns the page's path.

    A file that cannot be read any more gets a labelled placeholder, never a broken image.
    """
    out = Path(out)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    mark_not_indexed(out, "a simsearch report: its thumbnails")
    sections = []
    for heading, tiles in rows:
        figures = "".join(_figure(out, tile) for tile in tiles)
        sections.append(f'<section><h2>{html.escape(heading)}</h2><div class="row">{figures}</div></section>')
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(summary)}</p>{"".join(sections)}<script>{_CHECK}</script></body></html>\n'
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _figure(out: Path, tile: Tile) -> str:
    record = tile.image
    caption = f"<figcaption>{html.escape(record.path)}<br>{html.escape(tile.caption)}</figcaption>"
    klass = ' class="lead"' if tile.lead else ""
    thumb = out / "thumbs" / f"{record.id}.jpg"
    if not thumb.exists() and not _thumbnail(record, thumb):
        return f'<figure{klass}><div class="missing">cannot read the file</div>{caption}</figure>'
    link = html.escape(Path(record.abspath).absolute().as_uri(), quote=True)
    alt = html.escape(record.path, quote=True)
    return f'<figure{klass}><a href="{link}"><img src="thumbs/{record.id}.jpg" alt="{alt}"></a>{caption}</figure>'


def _thumbnail(record, target: Path) -> bool:
    try:
        image = decode_file(record.abspath, max_pixels=record.max_pixels).image
    except (ImageError, OSError):
        return False
    image.thumbnail((THUMB_SIZE, THUMB_SIZE))
    tmp = target.with_name(target.name + ".tmp")
    image.save(tmp, "JPEG", quality=85)
    os.replace(tmp, target)
    return True


def clusters_page(reads, run: str, out: str | os.PathLike) -> Path:
    """The page of clustering ``run``: one row per cluster, medoid first."""
    from .clusterings import cluster_members, clusters, run_info, scheme_text  # noqa: PLC0415

    info = run_info(reads, run)
    rows = []
    for c in clusters(reads, run):
        tiles = [Tile(m.image, "medoid" if m.medoid else f"distance {m.distance:.4f}", m.medoid)
                 for m in cluster_members(reads, run, c["cluster"])]
        rows.append((f"cluster {c['cluster']}: {c['size']} images, mean distance {c['mean_distance']}", tiles))
    scheme = scheme_text(info)
    summary = f"{info['images']} images by {info['by']}, k={info['k']}, {scheme}, made {info['created']}"
    return write_page(out, f"simsearch clusters: {run}", summary, rows)


def duplicates_page(groups: list, out: str | os.PathLike, by: str) -> Path:
    """The page of duplicate groups: one row per group, the image to keep first."""
    rows = [(f"group {n}: {len(g)} images", [Tile(r, f"{r.width}x{r.height}, {r.size:,} bytes" + (
        ", keep" if i == 0 else ""), i == 0) for i, r in enumerate(g)]) for n, g in enumerate(groups, 1)]
    summary = f"{len(groups)} groups, {sum(len(g) for g in groups)} images, by {by}"
    return write_page(out, "simsearch duplicates", summary, rows)


def pair_groups_page(groups: list, out: str | os.PathLike, level: str) -> Path:
    """The page of calibrated duplicate groups: the keeper, then each member with the probability
    that it is a duplicate of the keeper and why (exact, or the transform local features verified)."""
    rows = []
    for n, pairs in enumerate(groups, 1):
        keeper = pairs[0].a
        tiles = [Tile(keeper, f"{keeper.width}x{keeper.height}, {keeper.size:,} bytes, keep", True)]
        tiles += [Tile(p.b, f"{p.b.width}x{p.b.height}, p={p.score:.3f}, {reason(p)}") for p in pairs]
        rows.append((f"group {n}: {len(pairs) + 1} images", tiles))
    summary = f"{len(rows)} groups, {sum(len(g) + 1 for g in groups)} images, level {level}"
    return write_page(out, "simsearch duplicates", summary, rows)


def reason(pair) -> str:
    """Why a pair was decided: equal content, a verified transform, or the features alone."""
    if pair.exact:
        return "same bytes or pixels"
    t = pair.transform
    if pair.verified and t is not None:
        crop = "whole" if t["crop"] == [0, 0, 1, 1] else "crop " + ",".join(f"{v:.2f}" for v in t["crop"])
        return (f"verified ({pair.inputs.get('inliers', 0)} points): scale {t['scale']}, rotation {t['rotation']}, "
                f"{'mirrored, ' if t['flipped'] else ''}{crop}")
    return f"cosine {pair.inputs.get('cosine', 0):.3f}, pHash {round(pair.inputs.get('phash', 0) * 64)} bits"
