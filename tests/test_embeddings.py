"""Embeddings end to end: the ONNX graph matches torch, indexing embeds in the same
pass, cosine search and embedding / auto duplicates find edited, rotated and
mirrored copies, and the stored spec guards the index."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

import simsearch
from simsearch.cli import main
from simsearch.errors import ImageError, InvalidArgument, WeightsNotFound
from simsearch.faiss_store import build_vectors
from simsearch.models import create_embedder
from simsearch.runtime import ONNX_TOLERANCE, cache_dir

from .conftest import REPO, shared

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

MODEL = "efficientnet_lite0"


def _photo(name):
    return Image.open(REPO / "samples" / "images" / name).convert("RGB")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """An index with embeddings over the samples, their edits, and rotated / mirrored copies."""
    from make_variants import make_variants

    base = tmp_path_factory.mktemp("embedded")
    folder = base / "photos"
    folder.mkdir()
    for p in (REPO / "samples" / "images").iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    make_variants(folder)
    (folder / "turned").mkdir()
    _photo("coffee.png").transpose(Image.Transpose.ROTATE_90).save(folder / "turned" / "coffee_rot90.jpg", quality=92)
    ImageOps.mirror(_photo("rocket.jpg")).save(folder / "turned" / "rocket_mirror.png")
    idx = simsearch.open_index(base / "index", create=True)
    summary = idx.add([folder], workers=2, embed=MODEL)
    assert summary.embedded == summary.indexed == 31
    yield idx, folder
    idx.close()


def test_onnx_graph_matches_torch_and_is_cached(model_cache):
    photos = [_photo("chelsea.png"), _photo("coffee.png"), _photo("text.png")]
    onnx = create_embedder(MODEL, backend="onnx")
    torch_out = create_embedder(MODEL, backend="torch", device="cpu").encode(photos)
    assert np.abs(onnx.encode(photos) - torch_out).max() <= ONNX_TOLERANCE
    [graph] = (cache_dir() / "onnx").glob(f"{MODEL}-*.onnx")
    assert str(graph).startswith(str(model_cache))
    stamp = graph.stat().st_mtime_ns
    again = create_embedder(MODEL, backend="onnx", batch_size=2)  # batches of 2 give the same vectors
    assert graph.stat().st_mtime_ns == stamp
    assert np.abs(again.encode(photos) - torch_out).max() <= ONNX_TOLERANCE


def test_search_by_embedding_finds_edits_and_takes_outside_queries(embedded, tmp_path):
    idx, _ = embedded
    outside = tmp_path / "q.jpg"
    _photo("chelsea.png").crop((20, 10, 440, 290)).save(outside, quality=75)
    matches = idx.search(outside, by="embedding", k=8)
    assert matches[0].image.path in {"chelsea.png", "modes/chelsea_exact_copy.png", "edits/chelsea_q70.jpg",
                                     "edits/chelsea.webp", "edits/chelsea_crop.jpg", "modes/chelsea_rgba.png",
                                     "modes/chelsea_palette.png", "modes/chelsea_cmyk.jpg", "edits/chelsea_half.png"}
    assert all(m.image.path.split("/")[-1].startswith("chelsea") for m in matches[:8])
    sims = [m.similarity for m in matches]
    assert sims == sorted(sims, reverse=True) and sims[0] > 0.9
    assert all(m.similarity >= 0.99 for m in idx.search(outside, by="embedding", k=30, min_similarity=0.99))
    assert idx.search(outside, k=1)[0].similarity is not None  # auto searches embeddings when present


def test_bulk_search_equals_one_search_per_query(embedded, monkeypatch):
    from simsearch import queries

    idx, folder = embedded
    paths = sorted(folder.rglob("*.png"))[:12] + [None, folder / "missing.jpg"]
    embedder = idx.embedder()
    single = [idx.search(p, k=5, embedder=embedder, rotations=True) for p in paths[:-2]]
    monkeypatch.setattr(queries, "QUERY_BATCH", 5)  # batches of 5: 3 batches, the last with the bad query
    calls = []
    index = idx._reads.vector_index(MODEL)
    monkeypatch.setattr(type(index), "search", lambda self, q, k, _f=type(index).search: calls.append(len(q)) or
                        _f(self, q, k))
    bulk = idx.search_many(paths, k=5, embedder=embedder, rotations=True)
    assert calls == [40, 40, 16]  # one FAISS call per batch (5, 5, 2 readable queries), 8 views each
    assert [[(m.image.path, m.similarity) for m in r.matches] for r in bulk[:-2]] == \
           [[(m.image.path, m.similarity) for m in found] for found in single]
    assert bulk[-2].matches == [] and bulk[-2].error.kind == "not_an_image"  # a None in a list of paths
    assert bulk[-1].matches == [] and bulk[-1].error.kind == "unreadable"
    one = idx.search_many(str(paths[0]), k=5, embedder=embedder, rotations=True)  # a str was read letter by letter
    assert len(one) == 1 and [m.image.path for m in one[0].matches] == [m.image.path for m in single[0]]


def test_queries_in_memory_match_the_file(embedded):
    idx, folder = embedded
    pil = Image.open(folder / "chelsea.png")
    by_path = idx.search(folder / "chelsea.png", k=3)
    for query in (pil, np.asarray(pil.convert("RGB")), np.asarray(pil.convert("RGBA")), (folder / "chelsea.png").read_bytes()):
        assert [m.image.path for m in idx.search(query, k=3)] == [m.image.path for m in by_path]
    grey = idx.search(np.asarray(pil.convert("L")), by="phash", k=1)
    assert grey[0].image.path.split("/")[-1].startswith("chelsea")
    with pytest.raises(ImageError, match="shape"):
        idx.search(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InvalidArgument, match="not int"):
        idx.search(7)


def test_rotations_option_matches_a_turned_copy(embedded):
    idx, folder = embedded
    plain = {m.image.path: m.similarity for m in idx.search(folder / "coffee.png", by="embedding", k=40)}
    turned = {m.image.path: m.similarity for m in idx.search(folder / "coffee.png", by="embedding", k=40,
                                                             rotations=True)}
    assert turned["turned/coffee_rot90.jpg"] > 0.97 > plain.get("turned/coffee_rot90.jpg", 0.0)


def test_auto_duplicates_catch_rotations_and_mirrors(embedded):
    idx, _ = embedded
    groups = [sorted(r.path for r in g) for g in idx.duplicates()]  # by auto
    coffee = next(g for g in groups if "coffee.png" in g)
    rocket = next(g for g in groups if "rocket.jpg" in g)
    assert "turned/coffee_rot90.jpg" in coffee and "turned/rocket_mirror.png" in rocket
    assert not set(coffee) & set(rocket)
    embedding_only = [sorted(r.path for r in g) for g in idx.duplicates(by="embedding")]
    assert not any("turned/coffee_rot90.jpg" in g for g in embedding_only)  # what the rotation hashes add


def test_pairs_match_brute_force_and_ivf_recalls_neighbours():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((300, 64)).astype(np.float32)
    x = centres[rng.integers(0, 300, 6000)] + 0.3 * rng.standard_normal((6000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    from simsearch.faiss_store import VectorIndex

    flat, kind = build_vectors(x[:800], "auto")
    assert kind == "flat"
    i, j = VectorIndex(flat, np.arange(800), kind).pairs(x[:800], 0.9)
    sims = x[:800] @ x[:800].T
    want = {(a, b) for a, b in zip(*np.nonzero(np.triu(sims >= 0.9, 1)))}
    assert set(zip(i.tolist(), j.tolist())) == want and want
    ivf, kind = build_vectors(x, "ivf")
    assert kind == "ivf"
    exact = np.argsort(-(x[:100] @ x.T), axis=1)[:, :10]
    _, found = ivf.search(x[:100], 10)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    assert recall >= 0.9


def test_adding_embeddings_to_a_hash_only_index_completes_it(photos, tmp_path):
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([photos], workers=1)
    assert idx.stats()["embeddings"] == {}
    summary = idx.add([photos], workers=1, embed=MODEL)
    assert summary.refreshed == summary.embedded == 29 and summary.new == 0
    assert idx.stats()["embeddings"] == {MODEL: 29}
    again = idx.add([photos], workers=1, embed=MODEL)
    assert again.embedded == 0 and again.unchanged == 29


def test_bytes_already_indexed_take_their_features_without_decoding(tmp_path):
    """A folder copied or moved, or a file renamed, holds bytes the index has: those files take the stored
    hashes, embeddings and tags of the identical indexed file instead of being decoded and embedded again;
    a file whose bytes differ is decoded. What they take equals what decoding them gives."""
    import shutil

    first, copy = tmp_path / "first", tmp_path / "copy"
    first.mkdir()
    for name in ("rocket.jpg", "coffee.png", "chelsea.png"):
        shutil.copy(REPO / "samples" / "images" / name, first / name)
    options = {"workers": 1, "embed": MODEL, "tag": "imagenet"}
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([first], **options)
    shutil.copytree(first, copy)
    _photo("camera.png").save(copy / "coffee.png")  # other bytes under a known name: decoded
    summary = idx.add([copy], **options)
    assert (summary.reused, summary.embedded, summary.tagged, summary.indexed) == (2, 1, 1, 3)
    (copy / "rocket.jpg").rename(copy / "renamed.jpg")
    renamed = idx.add([copy], **options)
    assert (renamed.reused, renamed.removed, renamed.embedded) == (1, 1, 0)
    fresh = simsearch.open_index(tmp_path / "fresh", create=True)
    fresh.add([copy], **options)
    for index in (idx, fresh):
        assert index.stats()["embeddings"][MODEL] == len(index.images())
    taken, decoded = _features(idx, str(copy)), _features(fresh, str(copy))
    assert taken.keys() == decoded.keys() == {"renamed.jpg", "coffee.png", "chelsea.png"}
    for name, (columns, vector, tags) in decoded.items():
        assert taken[name][0] == columns and np.array_equal(taken[name][1], vector) and taken[name][2] == tags, name
    idx.close()
    fresh.close()


def test_identical_files_in_one_run_are_decoded_once(tmp_path):
    """Files of one run with the same bytes: the first is decoded and embedded; the others, in a second wave
    once it is written, take its features (they were all decoded)."""
    import shutil

    folder = tmp_path / "photos"
    for copy in ("a", "b", "c"):
        (folder / copy).mkdir(parents=True)
        for name in ("rocket.jpg", "coffee.png"):
            shutil.copy(REPO / "samples" / "images" / name, folder / copy / name)
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    summary = idx.add([folder], workers=1, embed=MODEL, tag="imagenet")
    assert (summary.indexed, summary.reused, summary.embedded, summary.tagged) == (6, 4, 2, 2)
    features = _features(idx, str(folder))
    for name in ("rocket.jpg", "coffee.png"):
        columns, vector, tags = features[f"a/{name}"]
        for copy in ("b", "c"):
            assert features[f"{copy}/{name}"][0] == columns and features[f"{copy}/{name}"][2] == tags
            assert np.array_equal(features[f"{copy}/{name}"][1], vector)
    idx.close()


def _features(idx, folder: str) -> dict:
    """path under ``folder`` -> (hash columns, embedding, detections) of each indexed image there."""
    ids, vectors = idx.vectors(MODEL)
    by_id = dict(zip(ids.tolist(), vectors))
    out = {}
    for record in idx.images():
        if record.abspath.startswith(folder + "/"):
            columns = {m: int(idx.hash_codes(m)[1][list(idx.hash_codes(m)[0]).index(record.id)])
                       for m in ("phash", "dhash", "whash", "ahash")}
            out[os.path.relpath(record.abspath, folder)] = (
                (columns, record.sha256, record.width, record.height), by_id[record.id], idx.detections(record.id))
    return out


def test_the_stored_spec_guards_the_index(embedded):
    idx, _ = embedded
    spec = idx.embedding_models()[MODEL]
    assert spec["dim"] == 1280 and len(spec["weights_sha256"]) == 64
    with idx.atomic() as conn:
        conn.exec_driver_sql("UPDATE embedders SET spec = ? WHERE name = ?",
                             (json.dumps({**spec, "weights_sha256": "0" * 64}), MODEL))
    try:
        with pytest.raises(InvalidArgument, match="other weights"):
            idx.embedder()
        with pytest.raises(InvalidArgument, match="other weights"):  # before matching loads the index's data
            idx.duplicates_of(np.zeros((8, 8, 3), np.uint8))
        assert idx._catalogue is None
    finally:
        with idx.atomic() as conn:
            conn.exec_driver_sql("UPDATE embedders SET spec = ? WHERE name = ?", (json.dumps(spec), MODEL))


def test_any_timm_architecture_loads_weights_from_a_file(tmp_path):
    import torch

    registry = create_embedder(MODEL, backend="torch", device="cpu")
    from simsearch.models import (
        _EmbeddingNet,  # the loaded timm model, saved under timm's own names
    )

    net = _EmbeddingNet(registry._entry.build(registry.spec, registry._weights_path))
    torch.save(net.classifier.state_dict(), tmp_path / "lite0.pth")
    by_name = create_embedder("timm:tf_efficientnet_lite0", weights=str(tmp_path / "lite0.pth"), backend="torch")
    photos = [_photo("rocket.jpg"), _photo("camera.png")]
    assert by_name.spec.dim == 1280
    assert np.abs(by_name.encode(photos) - registry.encode(photos)).max() < 1e-5


def test_missing_or_wrong_weights_for_named_architectures_fail_loudly(tmp_path):
    with pytest.raises(WeightsNotFound, match="weights=PATH"):
        create_embedder("torchvision:resnet18", backend="torch")
    with pytest.raises(WeightsNotFound, match="weights=PATH"):
        create_embedder("timm:resnet18", backend="torch")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFound, match="cannot read weights"):
        create_embedder("timm:resnet18", weights=str(tmp_path / "junk.pth"), backend="torch")
    with pytest.raises(InvalidArgument, match="timm has no architecture"):
        create_embedder("timm:no_such_net")
    with pytest.raises(InvalidArgument, match="unknown backend"):
        create_embedder(MODEL, backend="tpu")


def test_cli_embed_search_and_duplicates(photos, tmp_path):
    runner = CliRunner()
    ix = str(tmp_path / "ix")
    result = runner.invoke(main, ["index", str(photos), "--index", ix, "--workers", "1", "--embed"])
    assert result.exit_code == 0, result.output
    assert "embedded 29" in result.output
    result = runner.invoke(main, ["search", str(photos / "edits" / "rocket_crop.jpg"), "--index", ix, "-k", "3",
                                  "--format", "json"])
    rows = json.loads(result.output)
    assert rows[0]["path"] == "edits/rocket_crop.jpg" and rows[0]["similarity"] > 0.999
    result = runner.invoke(main, ["duplicates", "--index", ix, "--by", "embedding", "--min-similarity", "0.95",
                                  "--format", "json"])
    assert "rocket.jpg" in json.loads(result.output)["edits/rocket_q70.jpg"]


@pytest.mark.slow
def test_calibrated_default_holds_on_the_development_set(tmp_path):
    """The default decision (level copy, its calibrated cut), scored the strict way, and the scene level."""
    dups = shared("dups")
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([dups / "images"], embed=MODEL)
    from simsearch.evaluate import evaluate

    exclude = str(dups / "unlabeled_exclude.txt")
    copy = next(s for s in evaluate(idx, str(dups / "ground_truth.json"), methods=["auto"], exclude=exclude)
                if s.default)
    assert copy.f1 >= 0.95 and copy.average_precision >= 0.97, copy
    groups = idx.duplicates()  # the same default through the façade
    predicted = {frozenset((a.path, b.path)) for g in groups for a in g for b in g if a.path < b.path}
    assert copy.predicted_pairs <= len(predicted)
