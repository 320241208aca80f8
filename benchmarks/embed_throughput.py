"""Embedding throughput on CPU (and on a GPU when there is one): end-to-end
`simsearch index --embed` (decode once, 4 hashes, digests, EfficientNet-Lite0
embeddings, SQLite writes) against a plain torch loop over the same files (PIL
decode, resize, the same network in torch eager), with the model-only figures
of both backends beside them.

On a GPU it also measures the fixed cost and the marginal rate (whole commands at 5N and 20N photos), and what
decoding there would reach (nvJPEG, then resize and the network on the GPU).

On CPU it also measures the CPU budget (issue 15): the CPU time per image of each stage the command
runs, in one process on one core, as a worker runs them (read, SHA-256, decode with the pixel digest, the
four hashes with the rotation pHashes, the network's input; then the network in ONNX Runtime on one
thread at the workers' batch). With every core busy all the time and nothing else running, the cores
divided by their sum is the most any pipeline of these stages can reach.

Usage: python benchmarks/embed_throughput.py [--images 480] [--device cpu|cuda]
The photos are 1024x768 JPEGs generated from the bundled samples (seeded).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import time_index, write
from hash_throughput import make_photos

MODEL = "efficientnet_lite0"


def plain_torch_loop(files: list[Path], device: str, batch: int = 32) -> float:
    """The peer: what a user writes by hand with torch: open, resize, batch, forward."""
    import torch
    from PIL import Image

    from simsearch.models import create_embedder

    net = create_embedder(MODEL, backend="torch", device=device)._runner
    start = time.perf_counter()
    for i in range(0, len(files), batch):
        arrays = [np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
                  for f in files[i : i + batch]]
        net(np.stack(arrays))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def model_only(backend: str, device: str, batch: int, n: int = 256) -> float:
    """Images per second through the network alone, on preprocessed input."""
    from simsearch.models import create_embedder

    embedder = create_embedder(MODEL, backend=backend, device=device, batch_size=batch)
    pixels = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    embedder.encode_arrays(pixels[: batch * 2])  # warm-up
    start = time.perf_counter()
    embedder.encode_arrays(pixels)
    return n / (time.perf_counter() - start)


def nvjpeg_pipeline(files: list[Path], batch: int = 256, rounds: int = 4, device: str = "cuda") -> dict:
    """The ceiling of decoding on the GPU (issue 15), not the simsearch command, whose CPU workers decode
    every photo for its hashes: JPEG bytes -> nvJPEG (torchvision.io.decode_jpeg(device="cuda")) -> bilinear
    resize to 224x224 -> the same EfficientNet-Lite0 in fp16, batches of ``batch``. Images per second for
    decode and resize alone, for the whole chain on bytes in memory, and for the chain reading the files."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg, read_file

    from simsearch.models import create_embedder

    runner = create_embedder(MODEL, backend="torch", device=device)._runner
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None

    def decode_resize(chunk):
        images = torch.stack(decode_jpeg(chunk, device=device)).float()
        return F.interpolate(images, size=(224, 224), mode="bilinear", antialias=False)

    def embed(chunk):
        with torch.inference_mode():
            x = ((decode_resize(chunk) - runner.mean) / runner.std).to(runner.dtype)
            return runner.net(x.contiguous(memory_format=torch.channels_last))[0].float().cpu()

    def rate(step, load) -> float:
        for i in range(0, len(files), batch):  # warm-up: every batch shape (cuDNN picks its kernels per shape)
            step(load(files[i : i + batch]))
        sync()
        start = time.perf_counter()
        for _ in range(rounds):
            for i in range(0, len(files), batch):
                step(load(files[i : i + batch]))
        sync()
        return round(rounds * len(files) / (time.perf_counter() - start), 1)

    in_memory = {f: read_file(str(f)) for f in files}

    def held(chunk):
        return [in_memory[f] for f in chunk]

    return {"batch": batch, "decode_resize_img_per_s": rate(decode_resize, held),
            "decode_resize_embed_img_per_s": rate(embed, held),
            "read_decode_resize_embed_img_per_s": rate(embed, lambda chunk: [read_file(str(f)) for f in chunk]),
            "device": torch.cuda.get_device_name() if device == "cuda" else device}


def cpu_budget(files: list[Path]) -> dict:
    """Milliseconds of CPU per image for each stage on one core, and the bound they set on 2 cores."""
    import os

    from simsearch.indexer.features import Task, extract

    from simsearch.imageio import DEFAULT_MAX_PIXELS
    from simsearch.models import _CPU_BATCH, create_embedder

    embedder = create_embedder(MODEL, backend="onnx", threads=1)
    tasks = [Task(str(f), f.name, f.stat().st_size, 0, None, False, DEFAULT_MAX_PIXELS, embedder.spec.input_size)
             for f in files]
    extract(tasks[0])  # warm-up
    start = time.process_time()
    pixels = np.stack([extract(t).pixels for t in tasks])
    per_file = (time.process_time() - start) / len(tasks)
    embedder.run(pixels[:_CPU_BATCH])  # warm-up
    start = time.process_time()
    for i in range(0, len(pixels), _CPU_BATCH):
        embedder.run(pixels[i : i + _CPU_BATCH])
    network = (time.process_time() - start) / len(pixels)
    cores = os.cpu_count() or 1
    return {"ms_per_image_one_core": {"read_sha256_decode_digest_hashes_input": round(1000 * per_file, 2),
                                      f"network_onnx_1_thread_batch_{_CPU_BATCH}": round(1000 * network, 2)},
            "cores": cores, "bound_img_per_s": round(cores / (per_file + network), 1)}


def fixed_and_marginal(small: Path, big: Path, *options: str, device: str) -> dict:
    """Whole commands over two folders, ``big`` a superset of ``small``: the fixed cost (process start, imports,
    CUDA and model start) and the images per second past it, the rate a large collection sees."""
    sizes = [sum(1 for _ in f.glob("*.jpg")) for f in (small, big)]
    seconds = [min(time_index(f, *options, device=device)[0] for _ in range(2)) for f in (small, big)]
    per_image = (seconds[1] - seconds[0]) / (sizes[1] - sizes[0])
    return {"seconds": dict(zip(map(str, sizes), (round(s, 2) for s in seconds), strict=True)),
            "marginal_img_per_s": round(1 / per_image, 1), "fixed_seconds": round(seconds[0] - sizes[0] * per_image, 2)}


def steady_state(folder: Path, count: int, device: str) -> dict:
    """Hashes only and with embeddings, at 5 x and 20 x ``count`` photos (the first photos the same). Both sizes
    are well past the start-up: the workers decode and hash while the model and CUDA start (about 13 s), so
    at ``count`` and 5 x ``count`` the difference understates the work and overstates the rate (960 and 4,800
    photos on an H200 gave 2,417 img/s for embeddings, 4,800 and 19,200 gave 1,655)."""
    small = make_photos(folder.parent / "photos_x5", 5 * count)
    big = make_photos(folder.parent / "photos_x20", 20 * count)
    return {"hashes_only": fixed_and_marginal(small, big, device="cpu"),
            "embed": fixed_and_marginal(small, big, "--embed", MODEL, device=device)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    folder = make_photos(Path(tempfile.mkdtemp()) / "photos_1024x768", args.images)
    files = sorted(folder.glob("*.jpg"))
    time_index(folder, "--embed", MODEL, device=args.device)  # warm-up: page cache, ONNX export cached
    runs = [time_index(folder, "--embed", MODEL, device=args.device) for _ in range(args.repeats)]
    ours, line = min(runs)
    plain_torch_loop(files[:64], args.device)  # warm-up
    theirs = plain_torch_loop(files, args.device)
    if args.device == "cuda":
        models = {"torch_fp16_channels_last_b256": round(model_only("torch", "cuda", 256, 4096), 1)}
    else:
        models = {"onnxruntime_b8": round(model_only("onnx", "cpu", 8), 1),
                  "torch_eager_b32": round(model_only("torch", "cpu", 32), 1)}
    write(f"embed_throughput_{args.device}", {
        "images": len(files), "device": args.device,
        "note": "wall time of the whole command (process start, scan, decode, hashes, digests, embeddings, SQLite) "
                "against a plain torch loop (decode, resize, same network in torch eager) over the same files",
        "simsearch_index_embed": {"seconds": round(ours, 2), "img_per_s": round(len(files) / ours, 1),
                                  "summary": line},
        "peer_plain_torch_loop": {"seconds": round(theirs, 2), "img_per_s": round(len(files) / theirs, 1)},
        "ratio": round(theirs / ours, 2),
        "model_only_img_per_s": models,
        **({"cpu_budget": cpu_budget(files)} if args.device == "cpu" else
           {"steady_state": steady_state(folder, len(files), args.device), "nvjpeg_pipeline": nvjpeg_pipeline(files)}),
    })
    shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()
