"""Measure a tagger on labelled data: COCO-format box annotations in, COCO mAP out,
computed by pycocotools (the reference implementation of the COCO metrics)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass

from .errors import InvalidArgument, SimsearchError
from .imageio import decode_file

EVAL_MIN_SCORE = 0.001  # mAP integrates over every score: keep nearly all detections, as COCO's own evaluations do


@dataclass(frozen=True)
class CocoScore:
    tagger: str
    images: int  # images evaluated
    unreadable: list[tuple[str, str]]  # (path, why) of listed images that could not be read
    detections: int  # detections whose label is one of the annotation file's categories
    other_labels: int  # detections whose label the file does not have (left out)
    map_50_95: float  # mAP averaged over IoU 0.50:0.95 (COCO's primary metric)
    map_50: float  # mAP at IoU 0.50 (PASCAL VOC's metric)
    recall_100: float  # average recall, 100 detections per image


def evaluate_coco(tagger, annotations: str | os.PathLike, images: str | os.PathLike, *,
                  min_score: float = EVAL_MIN_SCORE) -> CocoScore:
    """Run ``tagger`` (``simsearch.taggers.create_tagger``) over the images that
    ``annotations`` lists (``file_name`` relative to ``images``) and score its boxes.
    Labels match the file's category names, case-insensitively."""
    if not tagger.spec.boxes:
        raise InvalidArgument(f"{tagger.spec.name} tags whole images, not boxes: evaluate a detector")
    coco = _load(annotations)
    category = {c["name"].lower(): c["id"] for c in coco.dataset["categories"]}
    evaluated, unreadable, results, other = [], [], [], 0
    pending: list[tuple[dict, object]] = []

    def flush() -> None:
        nonlocal other
        found = tagger.detect_arrays([array for _, array in pending], min_score=min_score)
        for (image, _), detections in zip(pending, found):
            width, height = image["width"], image["height"]
            for d in detections:
                if d.label.lower() not in category:
                    other += 1
                    continue
                x1, y1, x2, y2 = d.box
                results.append({"image_id": image["id"], "category_id": category[d.label.lower()], "score": d.score,
                                "bbox": [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height]})
        pending.clear()

    for image in coco.dataset["images"]:
        path = os.path.join(images, image["file_name"])
        try:
            pending.append((image, tagger.prepare(decode_file(path, full=True).image)))
        except (SimsearchError, OSError) as exc:
            unreadable.append((path, str(exc)))
            continue
        evaluated.append(image["id"])
        if len(pending) >= tagger.batch_size:
            flush()
    flush()
    if not evaluated:
        raise InvalidArgument(f"none of the {len(coco.dataset['images'])} images listed in {annotations} "
                              f"could be read under {images}")
    stats = _score(coco, results, evaluated)
    return CocoScore(tagger.spec.name, len(evaluated), unreadable, len(results), other,
                     round(stats[0], 4), round(stats[1], 4), round(stats[8], 4))


def _load(annotations):
    try:
        from pycocotools.coco import COCO  # noqa: PLC0415
    except ImportError:
        raise InvalidArgument("detect evaluate needs pycocotools: pip install pycocotools") from None
    try:
        with open(annotations, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read COCO annotations {annotations}: {exc}") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in keys):
        raise InvalidArgument(f"{annotations} is not a COCO detection file: it needs lists "
                              f"'images', 'annotations' and 'categories'")
    for image in data["images"]:
        if not {"id", "file_name", "width", "height"} <= set(image):
            raise InvalidArgument(f"{annotations}: an image entry lacks id, file_name, width or height: {image}")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def _score(coco, results: list[dict], image_ids: list[int]) -> list[float]:
    """COCOeval's 12 summary numbers; 0 where there is nothing to score (pycocotools says -1)."""
    from pycocotools.cocoeval import COCOeval  # noqa: PLC0415

    if not results:
        return [0.0] * 12
    with contextlib.redirect_stdout(io.StringIO()):
        found = coco.loadRes(results)
        evaluation = COCOeval(coco, found, "bbox")
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [max(0.0, float(v)) for v in evaluation.stats]
