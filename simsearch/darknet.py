"""A Darknet network in PyTorch, built from its ``.cfg`` and loaded from the official
``.weights`` file: enough of Darknet for YOLOv3-tiny (convolutional, maxpool, route,
upsample and yolo layers). torch is imported only by the functions that need it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import WeightsNotFound

SUPPORTED = {"convolutional", "maxpool", "route", "upsample", "yolo"}


def parse_cfg(path: str | Path) -> tuple[dict, list[dict]]:
    """([net] options, the layer blocks in order), each a dict with a ``type``."""
    blocks: list[dict] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            blocks.append({"type": line.strip("[]").strip()})
        else:
            key, _, value = line.partition("=")
            blocks[-1][key.strip()] = value.strip()
    if not blocks or blocks[0]["type"] not in {"net", "network"}:
        raise WeightsNotFound(f"{path} is not a Darknet cfg: it does not start with [net]")
    unknown = {b["type"] for b in blocks[1:]} - SUPPORTED
    if unknown:
        raise WeightsNotFound(f"{path}: unsupported Darknet layers {sorted(unknown)}")
    return blocks[0], blocks[1:]


def build(cfg_path: str | Path, weights_path: str | Path):
    """The network with its weights loaded; raises ``WeightsNotFound`` if the file does not fit the cfg."""
    import torch  # noqa: PLC0415

    net_options, blocks = parse_cfg(cfg_path)
    net = _darknet_module(torch)(net_options, blocks)
    _load_weights(net, Path(weights_path))
    return net.eval()


def _darknet_module(torch):
    nn = torch.nn

    class Darknet(nn.Module):
        def __init__(self, options: dict, blocks: list[dict]):
            super().__init__()
            self.blocks = blocks
            self.size = (int(options.get("height", 416)), int(options.get("width", 416)))
            self.layers = nn.ModuleList()
            channels, outputs = int(options.get("channels", 3)), []
            for block in blocks:
                layer, channels = _layer(nn, block, channels, outputs)
                self.layers.append(layer)
                outputs.append(channels)

        def forward(self, x):
            """Raw yolo-layer outputs, one (N, anchors * (5 + classes), H, W) tensor per yolo layer."""
            cache, heads = [], []
            for block, layer in zip(self.blocks, self.layers):
                if block["type"] == "route":
                    x = torch.cat([cache[i] for i in _route_sources(block, len(cache))], 1)
                elif block["type"] == "yolo":
                    heads.append(x)
                else:
                    x = layer(x)
                cache.append(x)
            return heads

    return Darknet


def _layer(nn, block: dict, channels: int, outputs: list[int]):
    kind = block["type"]
    if kind == "convolutional":
        size, filters = int(block["size"]), int(block["filters"])
        bn = int(block.get("batch_normalize", 0))
        pad = (size - 1) // 2 if int(block.get("pad", 0)) else 0
        parts = [nn.Conv2d(channels, filters, size, int(block.get("stride", 1)), pad, bias=not bn)]
        if bn:
            parts.append(nn.BatchNorm2d(filters, eps=1e-5, momentum=0.01))
        if block.get("activation", "linear") == "leaky":
            parts.append(nn.LeakyReLU(0.1))
        return nn.Sequential(*parts), filters
    if kind == "maxpool":
        size, stride = int(block["size"]), int(block["stride"])
        if stride == 1:  # Darknet pads right and bottom to keep the size, and its max ignores the padding
            return nn.Sequential(nn.ReplicationPad2d((0, size - 1, 0, size - 1)), nn.MaxPool2d(size, 1)), channels
        return nn.MaxPool2d(size, stride), channels
    if kind == "upsample":
        return nn.Upsample(scale_factor=int(block.get("stride", 2)), mode="nearest"), channels
    if kind == "route":
        return nn.Identity(), sum(outputs[i] for i in _route_sources(block, len(outputs)))
    return nn.Identity(), channels  # yolo: decoded outside the network


def _route_sources(block: dict, here: int) -> list[int]:
    return [int(i) if int(i) >= 0 else here + int(i) for i in block["layers"].split(",")]


def _load_weights(net, path: Path) -> None:
    """Darknet's layout: a header, then per convolution (bn bias, weight, mean, var | conv bias), conv weights."""
    import torch  # noqa: PLC0415

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsNotFound(f"cannot read weights {path}: {exc.strerror}") from None
    major, minor = np.frombuffer(data[:8], dtype="<i4")
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)  # version (3 x int32), images seen (int64 or int32)
    values = np.frombuffer(data[offset:], dtype="<f4")
    at = 0
    for block, layer in zip(net.blocks, net.layers):
        if block["type"] != "convolutional":
            continue
        conv = layer[0]
        tensors = ([layer[1].bias, layer[1].weight, layer[1].running_mean, layer[1].running_var]
                   if int(block.get("batch_normalize", 0)) else [conv.bias]) + [conv.weight]
        for tensor in tensors:
            n = tensor.numel()
            if at + n > len(values):
                raise WeightsNotFound(f"{path} is shorter than the network needs: wrong weights file")
            tensor.data.copy_(torch.from_numpy(values[at : at + n].copy()).view_as(tensor))
            at += n
    if at != len(values):
        raise WeightsNotFound(f"{path} holds {len(values) - at} values more than the network needs: wrong weights file")
