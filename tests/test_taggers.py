"""Taggers. YOLOv3-tiny from the official Darknet files agrees with OpenCV's Darknet
importer, an independent implementation (same labels, boxes at IoU >= 0.9, scores within
0.02) on both backends; tags made in the indexing pass equal tags made afterwards; the
imagenet tagger shares the embedding pass; torchvision detectors need their weights."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import simsearch
from simsearch.cli import main
from simsearch.errors import InvalidArgument, WeightsNotFound
from simsearch.taggers import list_taggers

from .conftest import REPO, SHARED

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module", params=["onnx", "torch"])
def yolo(request, yolo_folder):
    from simsearch.taggers import create_tagger

    return create_tagger("yolov3-tiny", backend=request.param, device="cpu"), yolo_folder


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
            assert mine.label == tagger.labels[cls], path  # COCO's names, in Darknet's class order
            assert abs(mine.score - score) <= 0.02 and _iou(mine.box, box) >= 0.9, (path, mine, score, box)
            compared += 1
    assert compared >= 1


@pytest.mark.skipif(not (SHARED / "dups").is_dir(), reason="../shared/data/dups is absent")
def test_room_photos_show_furniture(yolo):
    tagger, _ = yolo
    rooms = sorted((SHARED / "dups" / "images" / "imagededup_berlin_airbnb").glob("*.jpg"))[:6]
    labels = {d.label for dets in tagger.detect([Image.open(p) for p in rooms]) for d in dets}
    assert {"chair", "bed"} & labels


def test_wrong_or_missing_weights_are_refused(tmp_path, monkeypatch):
    from simsearch.taggers import create_tagger
    from simsearch.yolo import check_weights

    bad = tmp_path / "yolov3-tiny.weights"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsNotFound, match="SHA-256"):
        check_weights(bad)
    with pytest.raises(WeightsNotFound, match="SHA-256"):
        create_tagger("yolov3-tiny", weights=str(bad))
    monkeypatch.setenv("SIMSEARCH_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFound, match="simsearch models pull yolov3-tiny"):
        create_tagger("yolov3-tiny")


def test_a_weights_file_given_to_pull_is_checked_even_with_the_cache_full(yolo_folder, tmp_path):
    """`models pull --weights` with the official files already cached said "yolov3-tiny is in ..." whatever file
    it was given."""
    from simsearch.yolo import pull_yolov3_tiny

    bad = tmp_path / "yolov3-tiny.weights"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsNotFound, match="not the official yolov3-tiny weights"):
        pull_yolov3_tiny(str(bad))
    assert pull_yolov3_tiny(str(yolo_folder / "yolov3-tiny.weights")) == yolo_folder


def test_labels_are_coco_names(yolo):
    tagger, _ = yolo
    assert len(tagger.labels) == 80 and {"couch", "tv", "dining table", "potted plant"} <= set(tagger.labels)
    assert not {"sofa", "tvmonitor", "diningtable"} & set(tagger.labels)


@pytest.mark.slow
def test_tags_are_stored_counted_and_filter_searches(yolo_folder, photos, tmp_path):
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
    assert idx.tagged_ids(["person"], tagger="yolov3-tiny") == people
    misspelt = runner.invoke(main, ["tags", "--index", ix, "--tagger", "yolo3-tiny"])  # was "(no results)"
    assert misspelt.exit_code == 1 and "no tagger 'yolo3-tiny' has tagged this index; its taggers: yolov3-tiny" \
        in misspelt.output
    bad = runner.invoke(main, ["search", "--index", ix])
    assert bad.exit_code == 2 and "give an IMAGE" in bad.output


def _detections(index_dir):
    """path -> [(tagger, label, score, box)] of an index, for comparing two of them."""
    idx = simsearch.open_index(index_dir)
    return {r.path: [(d["tagger"], d["label"], d["score"], d["box"]) for d in idx.detections(r.id)]
            for r in idx.images()}


def _close(a: dict, b: dict) -> bool:
    """Same files, taggers and labels; scores and boxes equal up to float rounding between batchings."""
    if a.keys() != b.keys():
        return False
    for path in a:
        x, y = sorted(a[path]), sorted(b[path])
        if [d[:2] for d in x] != [d[:2] for d in y]:
            return False
        if any(abs(p[2] - q[2]) > 1e-3 or max(abs(u - v) for u, v in zip(p[3], q[3])) > 1e-3 for p, q in zip(x, y)):
            return False
    return True


@pytest.fixture
def many_photos(photos):
    """Over 32 files (enough for worker processes): the sample photos and edits, resized copies, one corrupt."""
    for n, path in enumerate(sorted(photos.glob("*.png"))[:11]):
        Image.open(path).convert("RGB").resize((300 + n * 7, 200 + n * 5)).save(photos / f"copy_{n}.jpg")
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return photos


@pytest.mark.slow
def test_tagging_in_the_indexing_pass_equals_tagging_afterwards(yolo_folder, many_photos, tmp_path):
    """index --tag (workers decode once and run the tagger) stores what tag (a second pass) stores."""
    in_pass, after = tmp_path / "in-pass", tmp_path / "after"
    files = sum(p.is_file() for p in many_photos.rglob("*"))
    assert files >= 32
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(many_photos), "--index", str(in_pass), "--workers", "2",
                                  "--no-progress", "--tag", "yolov3-tiny"])
    assert f"tagged {files - 1} (" in result.output and "failed 1" in result.output, result.output
    assert runner.invoke(main, ["index", str(many_photos), "--index", str(after), "--workers", "2"]).exit_code == 0
    assert runner.invoke(main, ["tag", "--index", str(after)]).output.startswith(f"tagged {files - 1} images")
    got, want = _detections(in_pass), _detections(after)
    assert sum(map(len, got.values())) >= 5 and _close(got, want)
    again = runner.invoke(main, ["index", str(many_photos), "--index", str(in_pass), "--workers", "2", "--tag",
                                 "yolov3-tiny"])
    assert "tagged 0" in again.output and f"unchanged {files}" in again.output, again.output  # nothing left to do


@pytest.mark.slow
def test_imagenet_tags_come_from_the_embedding_pass(photos, tmp_path):
    from simsearch.models import create_embedder
    from simsearch.taggers import create_tagger

    embedder = create_embedder("efficientnet_lite0")
    tagger = create_tagger("imagenet", embedder=embedder)
    assert tagger.shares(embedder) and not tagger.spec.boxes and len(tagger.labels) == 1000
    found = tagger.detect([Image.open(photos / "chelsea.png"), Image.open(photos / "coffee.png")], min_score=0.1)
    assert found[0][0].label in {"tabby", "tiger cat", "Egyptian cat"} and found[0][0].box == (0.0, 0.0, 1.0, 1.0)
    assert found[1][0].label in {"espresso", "cup", "coffee mug"}
    ix = tmp_path / "ix"
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(ix), "--workers", "1", "--embed",
                                       "--tag", "imagenet", "--min-score", "0.1"])
    assert "embedded 29, tagged 29" in result.output, result.output
    idx = simsearch.open_index(ix)
    chelsea = next(r for r in idx.images() if r.path == "chelsea.png")
    assert idx.detections(chelsea.id)[0]["label"] == found[0][0].label
    assert set(idx.taggers()) == {"imagenet"} and idx.taggers()["imagenet"]["weights_sha256"] == embedder.weights_sha256


@pytest.mark.slow
def test_changed_bytes_drop_old_embeddings_and_tags(photos, tmp_path):
    ix = tmp_path / "ix"
    runner = CliRunner()
    args = ["index", str(photos), "--index", str(ix), "--workers", "1"]
    assert runner.invoke(main, [*args, "--embed", "--tag", "imagenet", "--min-score", "0.1"]).exit_code == 0
    coffee = Image.open(photos / "coffee.png").convert("RGB")
    coffee.putpixel((0, 0), (1, 2, 3))  # bytes the index does not hold (identical ones would take their features)
    coffee.save(photos / "chelsea.png")  # new bytes, same name
    os.utime(photos / "chelsea.png", ns=(1, 1))
    result = runner.invoke(main, [*args, "--tag", "imagenet", "--min-score", "0.1"])
    assert "changed" in result.output and "tagged 1" in result.output, result.output
    idx = simsearch.open_index(ix)
    record = next(r for r in idx.images() if r.path == "chelsea.png")
    assert idx.detections(record.id)[0]["label"] in {"espresso", "cup", "coffee mug"}
    assert idx.stats()["embeddings"]["efficientnet_lite0"] == 28  # the old cat vector is gone, not kept as stale
    assert "embedded 1" in runner.invoke(main, [*args, "--embed"]).output


def test_torchvision_detectors_need_their_weights(tmp_path, monkeypatch):
    from simsearch.errors import InvalidArgument
    from simsearch.taggers import create_tagger

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(WeightsNotFound, match="weights=PATH.*ssdlite320_mobilenet_v3_large_coco"):
        create_tagger("torchvision:ssdlite320_mobilenet_v3_large")
    with pytest.raises(InvalidArgument, match="no detector 'resnet50'"):
        create_tagger("torchvision:resnet50")
    with pytest.raises(InvalidArgument, match="unknown tagger"):
        create_tagger("yolov9")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsNotFound, match="does not fit"):
        create_tagger("torchvision:ssdlite320_mobilenet_v3_large", weights=str(wrong))


def test_torchvision_outputs_become_normalised_coco_detections():
    from simsearch.taggers import torchvision_detections

    categories = ["__background__", "person", "bicycle", "N/A", "cat"]
    output = {"boxes": torch.tensor([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 50.0, 40.0], [-5.0, 0.0, 300.0, 30.0],
                                     [1.0, 1.0, 2.0, 2.0]]),
              "labels": torch.tensor([4, 1, 3, 1]), "scores": torch.tensor([0.5, 0.9, 0.8, 0.1])}
    found = torchvision_detections(output, 200, 400, categories, min_score=0.2)
    assert [(d.label, d.score) for d in found] == [("person", 0.9), ("cat", 0.5)]  # N/A and weak ones left out
    assert found[1].box == (0.05, 0.05, 0.55, 0.55) and found[0].box == (0.0, 0.0, 0.25, 0.1)


def test_torchvision_detector_loads_a_state_dict_of_its_architecture(tmp_path):
    """The loading and calling path, with a state dict saved from the bare architecture: COCO's
    pretrained files are not on this machine, so only the plumbing is checked here, not accuracy."""
    import torchvision

    from simsearch.taggers import create_tagger

    bare = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None)
    torch.save(bare.state_dict(), tmp_path / "ssdlite.pth")
    tagger = create_tagger("torchvision:ssdlite320_mobilenet_v3_large", weights=str(tmp_path / "ssdlite.pth"),
                           device="cpu")
    assert tagger.spec.resize == "squash" and tagger.spec.input_size == 320 and "couch" in tagger.labels
    found = tagger.detect([Image.open(REPO / "samples" / "images" / "chelsea.png")], min_score=0.0)
    assert len(found) == 1 and {d.label for d in found[0]} <= set(tagger.labels)
    assert all(0.0 <= v <= 1.0 for d in found[0] for v in d.box)


@pytest.mark.parametrize("spec", list_taggers(), ids=lambda s: s.name)
def test_every_registered_tagger_names_objects_in_its_own_labels(spec, request):
    from simsearch.taggers import create_tagger

    if spec.name == "yolov3-tiny":
        request.getfixturevalue("yolo_folder")
    tagger = create_tagger(spec.name)
    photos = [Image.open(REPO / "samples" / "images" / name) for name in ("camera.png", "chelsea.png")]
    found = tagger.detect(photos, min_score=0.05)
    assert len(found) == 2 and all(found)
    for detections in found:
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        for d in detections:
            x1, y1, x2, y2 = d.box
            assert d.label in tagger.labels and 0.05 <= d.score <= 1.0
            assert 0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0
            assert spec.boxes or d.box == (0.0, 0.0, 1.0, 1.0)


def test_tagging_afterwards_leaves_files_changed_since_indexing(built, photos):
    (photos / "chelsea.png").write_bytes((photos / "coffee.png").read_bytes())
    assert built.tag("imagenet", min_score=0.1) == len(built.images()) - 1
    chelsea = next(r for r in built.images() if r.path == "chelsea.png")
    assert built.detections(chelsea.id) == [] and chelsea.id in {i for i, _, _ in built.untagged("imagenet")}


def test_tagger_registry_drives_models_list_and_pull():
    from click.testing import CliRunner

    from simsearch.cli import main
    from simsearch.taggers import FAMILIES, pull_tagger, register_tagger

    with pytest.raises(InvalidArgument, match="already registered"):
        register_tagger(list_taggers()[0], locate=lambda weights: weights)(object)
    with pytest.raises(InvalidArgument, match="nothing to fetch.*yolov3-tiny"):
        pull_tagger("imagenet")
    listed = json.loads(CliRunner().invoke(main, ["models", "list", "--format", "json"]).output)
    tagger_rows = {row["name"] for row in listed if row["kind"] == "tagger"}
    assert tagger_rows == {s.name for s in list_taggers()} | {f"{f}:ARCH" for f in FAMILIES}
    bad = CliRunner().invoke(main, ["models", "pull", "imagenet"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "nothing to fetch" in bad.output
