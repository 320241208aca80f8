"""What the embedder and tagger registries share, importing no torch: backend names, device
checks, weight files (hashing, exact state-dict loading), the model cache, ONNX sessions, and the
network input of an image."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InvalidArgument, SimsearchError, WeightsNotFound
from .names import BACKENDS

ONNX_TOLERANCE = 1e-4  # max abs difference allowed between the ONNX graph and torch


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise InvalidArgument(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def registry_entry(kind: str, name: str, registry: dict, families: dict):
    """A registry's entry for ``name``: a registered one, or one its ``PREFIX:ARCH`` family makes."""
    if name in registry:
        return registry[name]
    family, _, arch = name.partition(":")
    if family in families and arch:
        return families[family][0](name, arch)
    patterns = ", ".join(f"{f}:ARCH" for f in families)
    raise InvalidArgument(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}, or {patterns}")


def require_embed_extra(what: str, modules: tuple[str, ...] = ("torch", "timm")) -> None:
    """Refuse at once, naming the extra to install, where ``modules`` of the embed extra are missing."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise InvalidArgument(f"{what} needs the embed extra (missing: {', '.join(missing)}): "
                              "pip install 'simsearch[embed]'")


def check_device(device: str) -> None:
    """Refuse a CUDA device that torch cannot see (imports torch)."""
    import torch  # noqa: PLC0415

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgument.hinted(f"device {device} asked for, but torch sees no CUDA GPU; use {{}}",
                                     'device="cpu"', "--device cpu")


def check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise InvalidArgument(f"batch size must be at least 1, got {batch_size}")


def model_input(rgb: Image.Image, size: int) -> np.ndarray:
    """The network input of one image: the whole frame squashed to ``size`` x ``size``
    (a centre crop would hide edits at the borders), uint8 HWC. Shared by indexing and
    queries so both see the same pixels."""
    return np.asarray(rgb.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def cache_dir() -> Path:
    """``$SIMSEARCH_CACHE``, else ``$XDG_CACHE_HOME/simsearch``, else ``~/.cache/simsearch``."""
    if os.environ.get("SIMSEARCH_CACHE"):
        return Path(os.environ["SIMSEARCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "simsearch"


def onnx_session(path: Path, make_net: Callable, sample: np.ndarray, outputs: tuple[str, ...], threads: int,
                 name: str):
    """An ONNX Runtime session on ``path`` (input ``pixels``, batch axis free). On first use the
    torch module from ``make_net()`` is exported there, checked against torch on ``sample``
    and published atomically; later uses only open the file."""
    if not installed("onnxruntime"):
        raise InvalidArgument.hinted("the onnx backend needs onnxruntime: pip install onnxruntime, or use {}",
                                     'backend="torch"', "--backend torch")
    if not path.exists():
        _export_checked(make_net().eval(), sample, outputs, path, name)
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _fusable_pads(path: Path) -> None:
    """Drop the empty "constant value" input torch's exporter gives every Pad. ONNX Runtime folds a zero
    Pad into the convolution after it only where that input is absent or constant, and reads the empty
    name as neither; an unfused Pad also costs a change of memory layout either side of it.
    EfficientNet-Lite0 on one core: 9.8 -> 7.8 ms an image, the same outputs bit for bit (2026-11-26)."""
    import onnx  # noqa: PLC0415

    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "Pad" and len(node.input) == 3 and not node.input[2]:
            del node.input[2]
    onnx.save(model, str(path))


def _export_checked(net, sample: np.ndarray, outputs: tuple[str, ...], path: Path, name: str) -> None:
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    x = torch.from_numpy(sample)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (x,), str(tmp), input_names=["pixels"], output_names=list(outputs),
                              dynamic_axes={n: {0: "batch"} for n in ("pixels", *outputs)},
                              opset_version=17, dynamo=False)
        _fusable_pads(tmp)
        with torch.inference_mode():
            expected = [t.numpy() for t in net(x)]
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"pixels": sample})
        worst = max(float(np.abs(g - e).max()) for g, e in zip(got, expected))
        if worst > ONNX_TOLERANCE:
            raise SimsearchError.hinted(
                f"the ONNX export of {name} differs from torch by {worst:.2e} (> {ONNX_TOLERANCE}); use {{}}",
                'backend="torch"', "--backend torch")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def has_gpu() -> bool:
    """An NVIDIA GPU is present (checked without importing torch)."""
    return os.path.exists("/dev/nvidiactl") and installed("torch")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_state_dict(path: str) -> dict:
    import torch  # noqa: PLC0415

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file  # noqa: PLC0415

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsNotFound(f"cannot read weights {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsNotFound(f"cannot read weights {path}: it holds no state dict")
    return state


def load_exact(model, path: str):
    """Load a state dict whose names match the model's; any missing or extra tensor is an error."""
    try:
        model.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsNotFound(f"{path} does not fit {type(model).__name__}: {first}: wrong weights file") from None
    return model
