"""Object tags as searchable metadata: labels per image, images per label."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from .errors import InvalidArgument
from .reads import ImageRecord, Reads
from .schema import OK, Detection, Image, Tagger
from .taggers import check_min_score


def taggers(reads: Reads) -> dict[str, dict]:
    """The taggers that wrote into this index -> their stored specs."""
    with reads.engine.connect() as conn:
        return {name: json.loads(spec) for name, spec in conn.execute(select(Tagger.name, Tagger.spec))}


def check_tagger(reads: Reads, tagger: str | None) -> None:
    """A tagger named as a filter must have tagged this index: a misspelt one would filter everything out."""
    if tagger is not None:
        known = taggers(reads)
        if tagger not in known:
            raise InvalidArgument(f"no tagger {tagger!r} has tagged this index; its taggers: "
                                  f"{', '.join(sorted(known)) or 'none yet'}")


def label_counts(reads: Reads, *, min_score: float = 0.0, tagger: str | None = None) -> list[dict]:
    """Images per label (most first), counting detections at or above ``min_score``."""
    check_min_score(min_score)
    check_tagger(reads, tagger)
    query = (select(Detection.tagger, Detection.label, func.count(func.distinct(Detection.image_id)))
             .join(Image, Image.id == Detection.image_id)
             .where(Image.status == OK, Detection.score >= min_score)
             .group_by(Detection.tagger, Detection.label))
    if tagger is not None:
        query = query.where(Detection.tagger == tagger)
    with reads.engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted(({"tagger": t, "label": label, "images": n} for t, label, n in rows),
                  key=lambda r: (-r["images"], r["label"], r["tagger"]))


def tagged_ids(reads: Reads, labels: list[str], *, min_score: float = 0.25, tagger: str | None = None) -> set[int]:
    """Ids of indexed images holding every one of ``labels`` at ``min_score`` or more."""
    check_min_score(min_score)
    check_tagger(reads, tagger)
    found = None
    with reads.engine.connect() as conn:
        for label in labels:  # bound parameters, one query per label, intersected
            query = (select(Detection.image_id).join(Image, Image.id == Detection.image_id)
                     .where(Image.status == OK, Detection.label == label, Detection.score >= min_score))
            if tagger is not None:
                query = query.where(Detection.tagger == tagger)
            ids = set(conn.execute(query).scalars())
            found = ids if found is None else found & ids
    return found or set()


def with_tags(reads: Reads, labels: list[str], *, min_score: float = 0.25,
              tagger: str | None = None) -> list[ImageRecord]:
    if not labels:
        raise InvalidArgument("give at least one tag")
    return reads.ordered(sorted(tagged_ids(reads, labels, min_score=min_score, tagger=tagger)))


def detections(reads: Reads, image_id: int, *, tagger: str | None = None) -> list[dict]:
    """What the taggers found in one indexed image, best first."""
    check_tagger(reads, tagger)
    d = Detection
    query = select(d.tagger, d.label, d.score, d.x1, d.y1, d.x2, d.y2).where(d.image_id == image_id).order_by(
        d.score.desc())
    if tagger is not None:
        query = query.where(d.tagger == tagger)
    with reads.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"tagger": t, "label": label, "score": score, "box": box} for t, label, score, *box in rows]
