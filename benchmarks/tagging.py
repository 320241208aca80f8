"""Tagging: throughput and agreement of simsearch's YOLOv3-tiny against OpenCV's Darknet
importer (the reference implementation of the same official files), in the same run.

1. Throughput on 1024x768 JPEG photos (generated from the bundled samples, seeded):
   - the whole `simsearch index --tag yolov3-tiny` command (process start, decode once,
     4 hashes, digests, tagging, SQLite writes);
   - the peer: a plain OpenCV loop over the same files (cv2.imread, blobFromImage,
     Darknet forward, NMSBoxes), the code a user writes with OpenCV's reference;
   - the networks alone, on the same preprocessed pixels;
   - what `--tag imagenet` adds to `--embed` (its tags come from the embedding pass).
2. Agreement on the real photos of ../shared/data/dups (skipped when absent): each of
   OpenCV's detections matched to ours of the same label (IoU >= 0.5); label match rate,
   mean IoU and largest score difference; and our detection counts per label.

Usage: python benchmarks/tagging.py [--images 240] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import DUPS, time_index, write
from hash_throughput import make_photos

MIN_SCORE, IOU = 0.25, 0.45


def opencv_net(folder: Path):
    import cv2

    return cv2.dnn.readNetFromDarknet(str(folder / "yolov3-tiny.cfg"), str(folder / "yolov3-tiny.weights"))


def opencv_detect(net, pixels: np.ndarray) -> list[tuple[int, float, np.ndarray]]:
    """OpenCV's Darknet network on RGB pixels: (class, score, normalised x1 y1 x2 y2), after NMS."""
    import cv2

    net.setInput(cv2.dnn.blobFromImage(pixels, 1 / 255, (416, 416), swapRB=False, crop=False))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    scores, classes = rows[:, 5:].max(1), rows[:, 5:].argmax(1)
    keep = np.flatnonzero(scores >= MIN_SCORE)
    boxes = [[float(rows[i, 0] - rows[i, 2] / 2), float(rows[i, 1] - rows[i, 3] / 2), float(rows[i, 2]),
              float(rows[i, 3])] for i in keep]
    found = []
    for cls in set(classes[keep].tolist()):  # per class, as batched_nms
        members = [j for j, i in enumerate(keep) if classes[i] == cls]
        kept = cv2.dnn.NMSBoxes([boxes[j] for j in members], [float(scores[keep[j]]) for j in members],
                                MIN_SCORE, IOU)
        for k in np.asarray(kept).ravel():
            x, y, w, h = boxes[members[k]]
            found.append((int(cls), float(scores[keep[members[k]]]), np.clip([x, y, x + w, y + h], 0, 1)))
    return found


def plain_opencv_loop(net, files: list[Path]) -> float:
    """The peer: cv2.imread, then the reference network and NMS, one photo at a time."""
    import cv2

    start = time.perf_counter()
    for path in files:
        bgr = cv2.imread(str(path))
        opencv_detect(net, cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (416, 416)))
    return time.perf_counter() - start


def networks_only(tagger, net, files: list[Path]) -> dict:
    from PIL import Image

    arrays = [tagger.prepare(Image.open(p).convert("RGB")) for p in files[:64]]
    tagger.detect_arrays(arrays[:8])  # warm-up
    start = time.perf_counter()
    tagger.detect_arrays(arrays, min_score=MIN_SCORE)
    ours = time.perf_counter() - start
    opencv_detect(net, arrays[0])
    start = time.perf_counter()
    for pixels in arrays:
        opencv_detect(net, pixels)
    theirs = time.perf_counter() - start
    return {"simsearch_img_per_s": round(len(arrays) / ours, 1), "backend": tagger.backend,
            "opencv_img_per_s": round(len(arrays) / theirs, 1), "ratio": round(theirs / ours, 2)}


def iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(tagger, net) -> dict:
    """Ours against OpenCV's on the same pixels of every dups photo."""
    from PIL import Image

    files = sorted(p for p in (DUPS / "images").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    matched, total, ours_total, ious, score_gaps = 0, 0, 0, [], []
    per_label: Counter = Counter()
    images_per_label: Counter = Counter()
    for path in files:
        pixels = tagger.prepare(Image.open(path).convert("RGB"))
        mine = tagger.detect_arrays([pixels], min_score=MIN_SCORE)[0]
        ours_total += len(mine)
        per_label.update(d.label for d in mine)
        images_per_label.update({d.label for d in mine})
        free = list(mine)
        for cls, score, box in opencv_detect(net, pixels):
            total += 1
            same = [d for d in free if d.label == tagger.labels[cls]]
            best = max(same, key=lambda d: iou(d.box, box), default=None)
            if best is not None and iou(best.box, box) >= 0.5:
                matched += 1
                ious.append(iou(best.box, box))
                score_gaps.append(abs(best.score - score))
                free.remove(best)
    return {"images": len(files), "opencv_detections": total, "simsearch_detections": ours_total,
            "label_match_rate": round(matched / total, 4) if total else None,
            "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
            "max_score_difference": round(float(max(score_gaps)), 4) if score_gaps else None,
            "detections_per_label": dict(per_label.most_common()),
            "images_per_label": dict(images_per_label.most_common())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from simsearch.taggers import create_tagger
    from simsearch.yolo import pull_yolov3_tiny

    folder = pull_yolov3_tiny()
    tagger = create_tagger("yolov3-tiny", device=args.device)
    net = opencv_net(folder)
    photos = make_photos(Path(tempfile.mkdtemp()) / "photos_1024x768", args.images)
    files = sorted(photos.glob("*.jpg"))
    time_index(photos, "--tag", "yolov3-tiny", device=args.device)  # warm-up: page cache, ONNX export cached
    ours, line = min(time_index(photos, "--tag", "yolov3-tiny", device=args.device) for _ in range(args.repeats))
    hashes_only = min(time_index(photos)[0] for _ in range(args.repeats))
    plain_opencv_loop(net, files[:16])  # warm-up
    theirs = plain_opencv_loop(net, files)
    embed = min(time_index(photos, "--embed", device=args.device)[0] for _ in range(args.repeats))
    embed_imagenet = min(time_index(photos, "--embed", "--tag", "imagenet", device=args.device)[0]
                         for _ in range(args.repeats))
    result = {
        "images": len(files), "device": args.device, "min_score": MIN_SCORE, "nms_iou": IOU,
        "note": "whole simsearch index --tag yolov3-tiny command (process start, decode once, 4 hashes, digests, "
                "tagging, SQLite) against a plain OpenCV loop (imread, the reference Darknet network, NMSBoxes) "
                "over the same 1024x768 JPEGs, same cores",
        "simsearch_index_tag": {"seconds": round(ours, 2), "img_per_s": round(len(files) / ours, 1),
                                "summary": line},
        "simsearch_index_hashes_only": {"seconds": round(hashes_only, 2)},
        "peer_plain_opencv_loop": {"seconds": round(theirs, 2), "img_per_s": round(len(files) / theirs, 1)},
        "ratio": round(theirs / ours, 2),
        "networks_only": networks_only(tagger, net, files),
        "imagenet_tags_with_embeddings": {"index_embed_seconds": round(embed, 2),
                                          "index_embed_tag_imagenet_seconds": round(embed_imagenet, 2),
                                          "added_seconds_per_1000": round((embed_imagenet - embed) / len(files)
                                                                          * 1000, 2)},
    }
    shutil.rmtree(photos.parent)
    if (DUPS / "images").is_dir():
        result["agreement_on_dups"] = agreement(tagger, net)
    else:
        print(f"agreement skipped: {DUPS} is absent (the development data set lives in ../shared/data)")
    write(f"tagging_{args.device}", result)


if __name__ == "__main__":
    main()
