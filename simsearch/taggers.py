"""The registry of taggers: models that name what is in an image. Like the embedders,
each carries its spec, and an index stores the spec (with the weights' SHA-256) of
every tagger that wrote into it.

- ``yolov3-tiny`` (``simsearch.yolo``): COCO's 80 classes with boxes, the official Darknet
  files, fetched into the model cache by ``pull_tagger`` (``simsearch models pull``).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidArgument, WeightsNotFound
from .runtime import (
    check_backend,
    check_batch_size,
    check_device,
    cpu_count,
    file_sha256,
    has_gpu,
    installed,
    load_exact,
    model_input,
    registry_entry,
    require_embed_extra,
)

IMAGENET_TOP_K = 5
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
    pull: Callable[[str | None], Path] | None = None  # fetches the weights into the model cache


_REGISTRY: dict[str, _Entry] = {}
# families of names, PREFIX:ARCH -> entry maker, with what they cover in words
FAMILIES: dict[str, tuple[Callable[[str, str], _Entry], str]] = {}


def register_tagger(spec: TaggerSpec, *, locate: Callable[[str | None], str], onnx: bool = True,
                    torch: bool = True, pull: Callable[[str | None], Path] | None = None):
    """Decorator registering ``build(weights, backend, device, threads, embedder) -> runner`` under
    ``spec.name``; the runner maps (uint8 HWC arrays, min score) to detections per image.
    ``locate(weights)`` finds the weights file; ``pull(weights)``, if any, fetches it."""

    def wrap(build: Callable) -> Callable:
        if spec.name in _REGISTRY:
            raise InvalidArgument(f"a tagger named {spec.name!r} is already registered")
        _REGISTRY[spec.name] = _Entry(spec, locate, build, onnx, torch, pull)
        return build

    return wrap


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
    return [entry.spec for entry in _REGISTRY.values()]


def pull_tagger(name: str, weights: str | None = None) -> Path:
    """Fetch a registered tagger's weights into the model cache; returns where they are."""
    entry = _entry(name)
    if entry.pull is None:
        pullable = ", ".join(n for n, e in _REGISTRY.items() if e.pull is not None)
        raise InvalidArgument(f"{name} has nothing to fetch (its weights: {entry.spec.weights}); "
                              f"taggers that can be fetched: {pullable}")
    return entry.pull(weights)


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
    check_backend(backend)
    check_batch_size(batch_size)
    entry = _entry(name)
    require_embed_extra("tagging images", ("torch", "timm") if entry.torch else ("timm",))
    path = entry.locate(weights)
    gpu = device.startswith("cuda") if device else has_gpu()
    device = device or ("cuda" if gpu else "cpu")
    if backend == "auto":
        backend = "torch" if gpu or not entry.onnx or not installed("onnxruntime") else "onnx"
    runner = entry.build(path, backend, device, threads or cpu_count(), embedder)
    return Tagger(entry.spec, file_sha256(path), runner, runner.backend,
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
    return registry_entry("tagger", name, _REGISTRY, FAMILIES)


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
    from .models import weights_file  # noqa: PLC0415

    return weights_file(_IMAGENET_EMBEDDER, weights)


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


@register_tagger(IMAGENET, locate=_locate_imagenet, torch=False)
class _ImageNet:
    """Top-k ImageNet classes of EfficientNet-Lite0, from the embedder's logits: where the
    index embeds with the same model and weights, tags cost no second pass."""

    def __init__(self, weights: str, backend: str, device: str, threads: int, embedder=None):
        from .models import create_embedder  # noqa: PLC0415

        if embedder is None or not self.shares(embedder, file_sha256(weights)):
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
        weights="from a given weights file or the local torch hub cache")
    filename = os.path.basename(default.url)

    def locate(weights: str | None) -> str:
        path = weights or str(Path(torch.hub.get_dir()) / "checkpoints" / filename)
        if not os.path.isfile(path):
            raise WeightsNotFound.hinted(f"no weights for {name} at {path}: pass {{}} to torchvision's {arch} "
                                         f"state dict (its COCO file is {filename}); nothing is downloaded",
                                         "weights=PATH", "--weights PATH")
        return path

    def build(weights: str, backend: str, device: str, threads: int, embedder=None):
        if backend == "onnx":
            raise InvalidArgument.hinted(f"{name} runs on torch only: use {{}} (or auto)", 'backend="torch"',
                                         "--backend torch")
        net = load_exact(_bare_detector(arch, len(categories)), weights)
        return _TorchvisionDetector(net, categories, device)

    return _Entry(spec, locate, build, onnx=False)


FAMILIES["torchvision"] = (_torchvision_entry, "COCO detectors: Faster R-CNN, RetinaNet, FCOS, SSD, SSDlite")


def _bare_detector(arch: str, classes: int):
    """The architecture with no weights at all (nothing fetched, not even the backbone's)."""
    import torchvision  # noqa: PLC0415

    return torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=classes)


class _TorchvisionDetector:
    def __init__(self, net, categories: list[str], device: str):

        check_device(device)
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


from . import yolo  # noqa: E402, F401 - registers yolov3-tiny (it imports this module's registry)
