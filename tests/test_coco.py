"""detect evaluate: COCO mAP through pycocotools, on hand-labelled sample photos."""

import json
import shutil

import pytest
from click.testing import CliRunner

from simsearch.cli import main
from simsearch.coco import evaluate_coco
from simsearch.errors import InvalidArgument

from .conftest import REPO

pytest.importorskip("pycocotools")

# boxes drawn by hand on the bundled photos: [x, y, width, height] in pixels
HAND_LABELS = {
    "camera.png": (512, 512, [("person", [0, 62, 335, 450])]),
    "chelsea.png": (451, 300, [("cat", [0, 0, 400, 300])]),
    "coffee.png": (600, 400, [("cup", [172, 18, 238, 290]), ("spoon", [325, 66, 100, 260])]),
}


def _coco_file(path, labels: dict) -> None:
    names = sorted({name for _, _, boxes in labels.values() for name, _ in boxes})
    ids = {name: n for n, name in enumerate(names, 1)}
    images, annotations = [], []
    for n, (file_name, (width, height, boxes)) in enumerate(sorted(labels.items()), 1):
        images.append({"id": n, "file_name": file_name, "width": width, "height": height})
        for name, box in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": ids[name], "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i, "name": name} for name, i in ids.items()]}))


@pytest.fixture(scope="module")
def yolo(yolo_folder):
    from simsearch.taggers import create_tagger

    return create_tagger("yolov3-tiny")


@pytest.fixture
def labelled(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in HAND_LABELS:
        shutil.copy(REPO / "samples" / "images" / name, folder)
    _coco_file(tmp_path / "hand.json", HAND_LABELS)
    return tmp_path / "hand.json", folder


def test_own_detections_as_ground_truth_score_a_perfect_map(yolo, labelled, tmp_path):
    """Boxes converted to COCO pixels the right way round match themselves at every IoU."""
    _, folder = labelled
    own = {}
    for name, (width, height, _) in HAND_LABELS.items():
        from PIL import Image

        found = yolo.detect([Image.open(folder / name)], min_score=0.25)[0]
        own[name] = (width, height, [(d.label, [d.box[0] * width, d.box[1] * height, (d.box[2] - d.box[0]) * width,
                                                (d.box[3] - d.box[1]) * height]) for d in found])
    assert sum(len(boxes) for _, _, boxes in own.values()) >= 2
    _coco_file(tmp_path / "own.json", own)
    score = evaluate_coco(yolo, tmp_path / "own.json", folder, min_score=0.25)
    assert score.map_50 == 1.0 and score.map_50_95 == 1.0


def test_hand_labels_give_a_partial_map_and_missing_files_are_reported(yolo, labelled):
    annotations, folder = labelled
    (folder / "coffee.png").unlink()
    score = evaluate_coco(yolo, annotations, folder)
    assert score.images == 2 and len(score.unreadable) == 1 and "coffee.png" in score.unreadable[0][0]
    # the cameraman and the cat are found (IoU 0.79 and 0.91), after a stronger false person
    assert 0.3 <= score.map_50 <= 1.0 and score.map_50_95 < score.map_50


def test_cli_prints_the_scores_and_refuses_bad_input(yolo, labelled, tmp_path):
    annotations, folder = labelled
    runner = CliRunner()
    result = runner.invoke(main, ["detect", "evaluate", "--coco", str(annotations), "--images", str(folder),
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)[0]
    assert row["images"] == 3 and 0.0 < row["mAP@.5"] <= 1.0
    (tmp_path / "bad.json").write_text('{"images": []}')
    bad = runner.invoke(main, ["detect", "evaluate", "--coco", str(tmp_path / "bad.json"), "--images", str(folder)])
    assert bad.exit_code == 1 and "not a COCO detection file" in bad.output and "Traceback" not in bad.output
    whole = runner.invoke(main, ["detect", "evaluate", "--coco", str(annotations), "--images", str(folder),
                                 "--tagger", "imagenet"])
    assert whole.exit_code == 1 and "whole images" in whole.output
    with pytest.raises(InvalidArgument, match="could be read"):
        evaluate_coco(yolo, annotations, tmp_path / "nowhere")
