"""Calibrated duplicate decisions: the hard edits are found, unrelated photos are not joined,
groups do not chain, a decision can be explained, and the shipped models say where they came from."""

import dataclasses
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

import simsearch
from simsearch import decide, duplicates, matching, report
from simsearch import pairs as pairs_module
from simsearch import verified as verified_module
from simsearch.cli import main
from simsearch.decide import LEVELS, default_cut, model_data, star_groups
from simsearch.duplicates import Pair, keeper_ranking
from simsearch.errors import SimsearchWarning
from simsearch.imageio import DEFAULT_MAX_PIXELS
from simsearch.pairs import Collection, Pairs
from simsearch.reads import ImageRecord
from simsearch.verify import (
    BLOCK,
    MIN_BLOCKS,
    RATIO,
    Verification,
    _block_correlation,
    _ratio_matches,
    keypoints,
    verify,
    verify_many,
)

from .conftest import REPO

BASES = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut_like.png")


def _hard_copies(img: Image.Image) -> dict[str, Image.Image]:
    """The edits a re-uploaded listing photo goes through, the ones pHash misses among them."""
    w, h = img.size
    text = img.copy()
    ImageDraw.Draw(text).text((w // 10, h // 3), "SALE -30%", fill=(255, 255, 0),
                              font=ImageFont.load_default(size=max(12, h // 9)), stroke_width=2, stroke_fill=(0, 0, 0))
    return {
        "crop30.jpg": img.crop((w // 10, h // 8, w - w // 12, h - h // 10)),
        "text.jpg": text,
        "tilt6.jpg": img.rotate(6, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255)),
        "border.png": ImageOps.expand(img, border=(w // 12, h // 12), fill=(0, 0, 0)),
        "mirror_small.webp": ImageOps.mirror(img).resize((w // 2, h // 2)),
        "grey_q30.jpg": ImageOps.grayscale(img),
        "stretch.jpg": img.resize((round(w * 1.3), h)),  # an aspect change: more pixels than its base
    }


@pytest.fixture(scope="module")
def copies_index(tmp_path_factory):
    """Four bases (three samples and a brick photo tinted and cropped to stand apart) with seven hard
    copies each, plus the other samples as distractors, indexed with embeddings."""
    pytest.importorskip("onnxruntime")
    base = tmp_path_factory.mktemp("decide")
    folder = base / "photos"
    folder.mkdir()
    samples = REPO / "samples" / "images"
    for p in samples.iterdir():
        shutil.copy(p, folder / p.name)
    brick = Image.open(samples / "brick.png").convert("RGB")
    ImageOps.colorize(brick.convert("L"), (40, 10, 60), (250, 220, 120)).save(folder / "astronaut_like.png")
    (folder / "brick.png").unlink()  # only its tinted version: no pair of bases is a copy
    for name in BASES:
        img = Image.open(folder / name).convert("RGB")
        for suffix, copy in _hard_copies(img).items():
            options = {"quality": 30} if suffix.endswith("q30.jpg") else {}
            copy.save(folder / f"{name.split('.')[0]}__{suffix}", **options)
    idx = simsearch.open_index(base / "index", create=True)
    idx.add([folder], workers=1, embed="efficientnet_lite0")
    yield idx
    idx.close()


def _base(path: str) -> str:
    return path.split("__")[0].split(".")[0]


def test_hard_copies_are_grouped_with_their_base(copies_index):
    groups = copies_index.duplicates()
    by_base = {}
    for group in groups:
        bases = {_base(r.path) for r in group}
        assert len(bases) == 1, f"a group mixes pictures: {[r.path for r in group]}"
        by_base.setdefault(bases.pop(), set()).update(r.path for r in group)
    found = sum(len(members) for members in by_base.values())
    assert found >= 0.85 * len(BASES) * 8, by_base  # recall over the 32 copies and bases
    for group in groups:  # the keeper: a framed, turned or stretched copy never outranks its base
        assert group == [group[k] for k in keeper_ranking(group)]
        assert not group[0].path.endswith(("__border.png", "__tilt6.jpg", "__stretch.jpg")), [r.path for r in group]


def test_explain_verifies_and_estimates_the_transform(copies_index):
    crop = copies_index.explain("chelsea.png", "chelsea__crop30.jpg")
    assert crop.duplicate and crop.transform is not None and crop.inputs["inliers"] > 20
    x1, y1, x2, y2 = crop.transform["crop"]
    assert abs(x1 - 0.1) < 0.05 and abs(y1 - 0.125) < 0.05 and abs(x2 - 0.917) < 0.05 and abs(y2 - 0.9) < 0.05
    mirrored = copies_index.explain("chelsea.png", "chelsea__mirror_small.webp")
    assert mirrored.transform["flipped"] and abs(mirrored.transform["scale"] - 0.5) < 0.1
    assert 0 < crop.inputs["residual"] < 25  # per cent of the keypoints' size
    unrelated = copies_index.explain("chelsea.png", "coffee.png")
    assert not unrelated.duplicate and unrelated.score < 0.2
    assert (unrelated.inputs["residual"] is None) == (unrelated.transform is None)  # no fit: no residual
    # asked the other way round: the same decision, told from the copy's side (the base covers all of it)
    back = copies_index.explain("chelsea__crop30.jpg", "chelsea.png")
    assert (back.a.path, back.b.path) == ("chelsea__crop30.jpg", "chelsea.png")
    assert back.score == crop.score and back.duplicate and back.inputs == crop.inputs
    assert back.transform["crop"] == [0.0, 0.0, 1.0, 1.0]
    assert abs(back.transform["scale"] * crop.transform["scale"] - 1) < 0.02
    assert copies_index.explain("chelsea__mirror_small.webp", "chelsea.png").transform["flipped"]


def test_scene_level_includes_copy_pair_by_pair(copies_index):
    from simsearch.duplicates import decide

    copy, scene = decide(copies_index._reads, "copy"), decide(copies_index._reads, "scene")
    assert np.array_equal(copy.decisions.pairs.left, scene.decisions.pairs.left)
    assert copy.decisions.matched().any()
    assert (scene.decisions.score >= copy.decisions.score).all()  # a copy is a shot of the same scene
    copy_pairs = _pairs(copies_index.duplicates(level="copy"))
    scene_pairs = _pairs(copies_index.duplicates(level="scene"))
    assert len(copy_pairs & scene_pairs) >= 0.8 * len(copy_pairs)


def _pairs(groups) -> set:
    return {frozenset((a.path, b.path)) for g in groups for a in g for b in g if a.path < b.path}


def test_a_higher_cut_never_finds_more(copies_index):
    loose = _pairs(copies_index.duplicates(cut=0.2))
    strict = _pairs(copies_index.duplicates(cut=0.95))
    assert len(strict) <= len(loose)


def test_evaluate_reports_average_precision_and_the_default(copies_index, tmp_path):
    paths = [r.path for r in copies_index.images()]
    truth = {p: [o for o in paths if o != p and _base(o) == _base(p) and _base(p) in {_base(b) for b in BASES}]
             for p in paths}
    gt = tmp_path / "truth.json"
    gt.write_text(json.dumps(truth))
    from simsearch.evaluate import evaluate

    scores = evaluate(copies_index, str(gt), methods=["auto"])
    [default] = [s for s in scores if s.default]
    assert default.cut == default_cut("copy") and default.level == "copy"
    assert default.average_precision >= 0.8 and default.f1 >= 0.8, default


def test_cli_explain_and_duplicates_explain(copies_index):
    ix = str(copies_index.directory)
    result = CliRunner().invoke(main, ["explain", "coffee.png", "coffee__text.jpg", "--index", ix, "--format", "json"])
    assert result.exit_code == 0, result.output
    pair = json.loads(result.output)
    assert pair["duplicate"] and pair["level"] == "copy" and set(pair["inputs"]) >= {"cosine", "phash", "inliers"}
    result = CliRunner().invoke(main, ["duplicates", "--explain", "--format", "json", "--index", ix])
    groups = json.loads(result.output)
    assert groups and all(p["duplicate"] and p["score"] >= default_cut("copy") for g in groups for p in g["pairs"])
    bad = CliRunner().invoke(main, ["duplicates", "--explain", "--index", ix])
    assert bad.exit_code == 2 and "--explain goes with" in bad.output
    missing = CliRunner().invoke(main, ["explain", "nope.jpg", "coffee.png", "--index", ix])
    assert missing.exit_code == 1 and missing.output.startswith("Error: nope.jpg is not in the index")
    same = CliRunner().invoke(main, ["explain", "coffee.png", "coffee.png", "--index", ix])
    assert same.exit_code == 1 and same.output == "Error: A and B are the same indexed image: name two different ones\n"


def test_duplicates_progress_goes_to_stderr_and_changes_nothing(copies_index):
    ix = str(copies_index.directory)
    quiet = CliRunner().invoke(main, ["duplicates", "--format", "json", "--no-progress", "--index", ix])
    shutil.rmtree(copies_index.directory / "verified")  # kept verifications would leave nothing to show
    shown = CliRunner().invoke(main, ["duplicates", "--format", "json", "--progress", "--index", ix])
    assert quiet.exit_code == shown.exit_code == 0
    assert shown.stdout == quiet.stdout and json.loads(shown.stdout) and quiet.stderr == ""
    assert "keypoints (copy)" in shown.stderr and "verifying (copy)" in shown.stderr


def test_verifications_are_kept_between_runs_and_change_nothing(copies_index, monkeypatch):
    first = [[r.path for r in g] for g in copies_index.duplicates()]
    kept = list((copies_index.directory / "verified").glob("pairs-*.npy"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("a kept pair was verified again")

    monkeypatch.setattr(decide, "keypoints", no_decoding)
    assert [[r.path for r in g] for g in copies_index.duplicates()] == first
    checked = next(p for g in copies_index.duplicate_pairs() for p in g if p.verified and p.transform is not None)
    pair = copies_index.explain(checked.a.path, checked.b.path)
    assert pair.verified and pair.transform is not None and pair.transform == checked.transform
    monkeypatch.undo()
    kept[0].write_bytes(b"not a kept file")  # damaged: treated as empty, verified again, rewritten
    assert [[r.path for r in g] for g in copies_index.duplicates()] == first
    assert verified_module._read(kept[0])



def test_kept_verifications_that_cannot_be_written_cost_nothing_else(tmp_path):
    blocked = tmp_path / "file_not_folder"
    blocked.write_text("")  # the folder for the kept file cannot be made here
    kept = verified_module.VerifiedPairs(blocked / "pairs.npy", ["ab" * 32, "cd" * 32])
    kept.add([0], [1], [verify(None, None)])
    kept.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file_not_folder"]


def test_hash_only_index_still_decides(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    img = Image.open(REPO / "samples" / "images" / "coffee.png").convert("RGB")
    img.save(folder / "coffee.png")
    img.resize((img.width // 2, img.height // 2)).save(folder / "coffee_half.jpg", quality=80)
    ImageOps.mirror(img).save(folder / "coffee_mirror.png")
    shutil.copy(REPO / "samples" / "images" / "rocket.jpg", folder / "rocket.jpg")
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1)
        [group] = idx.duplicates()
        assert {r.path for r in group} == {"coffee.png", "coffee_half.jpg", "coffee_mirror.png"}


def _look_alike(rng: np.random.Generator) -> Image.Image:
    """A potato-like photo: a spotted ellipse of random size, place and shade on black. Such pictures are close in
    every hash, whatever their shapes and spots."""
    img = Image.new("RGB", (300, 300), "black")
    draw = ImageDraw.Draw(img)
    cx, cy = 150 + rng.integers(-12, 13, 2)
    rx, ry = int(rng.integers(100, 135)), int(rng.integers(75, 105))
    shade = tuple(int(v) for v in np.array([215, 170, 110]) * rng.uniform(0.85, 1.1))
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=shade)
    for _ in range(40):
        x, y, r = rng.integers(cx - rx + 20, cx + rx - 20), rng.integers(cy - ry + 15, cy + ry - 15), rng.integers(2, 5)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v * 0.6) for v in shade))
    return img.filter(ImageFilter.GaussianBlur(1.5))


def test_a_hash_only_index_verifies_every_copy_pair_it_is_not_sure_to_refuse(tmp_path):
    """Without embeddings, hashes alone say little of smooth pictures: among look-alikes, the cheap model was sure
    of pairs of different ones (two potatoes at 0.84). Every candidate pair above the band's low end is verified."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(40):
        img = _look_alike(rng)
        img.save(folder / f"blob{k:02d}.png")
        if k < 3:
            img.resize((200, 200)).save(folder / f"blob{k:02d}_small.jpg", quality=90)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1)
        decided = duplicates.decide(idx._reads, "copy")
    d = decided.decisions
    low = decide.model_data()["levels"]["copy"]["band_hashes"][0]
    assert (d.cheap >= 0.9).any()  # the cheap model is sure of some pairs ...
    assert d.verified[(d.cheap >= low) & ~d.pairs.exact].all()  # ... and all of them are verified
    pairs = [decided.pair(k) for k in np.flatnonzero(d.score >= d.cut)]
    assert {(p.a.path, p.b.path) for p in pairs if p.b.path == p.a.path.replace(".png", "_small.jpg")} == {
        (f"blob{k:02d}.png", f"blob{k:02d}_small.jpg") for k in range(3)}


def _new_copy(tmp_path, suffix: str = ".jpg") -> Path:
    """A copy of a base that is not indexed: turned 5 degrees, halved, recompressed."""
    img = Image.open(REPO / "samples" / "images" / "chelsea.png").convert("RGB")
    turned = img.rotate(5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    path = tmp_path / f"new_listing{suffix}"
    turned.resize((turned.width // 2, turned.height // 2)).save(path, **({"quality": 60} if suffix == ".jpg" else {}))
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png"])  # a JPEG's keypoints are read from its luminance alone
def test_duplicates_of_a_new_photo_are_what_duplicates_decides_once_it_is_indexed(copies_index, tmp_path, suffix):
    query = _new_copy(tmp_path, suffix)
    [result] = copies_index.duplicates_of(str(query))
    found = {p.a.path: p for p in result.duplicates}
    assert result.error is None and len(found) >= 5 and all(_base(path) == "chelsea" for path in found), found
    assert all(p.b.path == str(query) and p.b.id == -1 and p.duplicate for p in found.values())
    assert [p.score for p in result.duplicates] == sorted((p.score for p in result.duplicates), reverse=True)
    # the same photo indexed: duplicates decides its pairs alike, score for score
    shutil.copytree(copies_index.directory, tmp_path / "ix")
    with simsearch.open_index(tmp_path / "ix") as idx:
        idx.add([query], workers=1, embed="efficientnet_lite0")
        decided = duplicates.decide(idx._reads, "copy")
        row = len(decided.collection.ids) - 1  # indexed last
        assert decided.row_record(row).abspath == str(query)
        pairs = decided.decisions.pairs
        mine = np.flatnonzero(((pairs.left == row) | (pairs.right == row)) & decided.decisions.matched())
        indexed = {decided.row_record(int(pairs.left[k] + pairs.right[k]) - row).abspath: decided.decisions.score[k]
                   for k in mine.tolist()}
    found = {p.a.abspath: p.score for p in result.duplicates}
    assert set(indexed) == set(found)
    assert all(abs(indexed[path] - score) < 1e-4 for path, score in found.items()), (indexed, found)


def test_duplicates_of_takes_images_in_memory_and_bytes_and_reports_each_bad_query(copies_index, tmp_path):
    query = _new_copy(tmp_path)
    results = copies_index.duplicates_of([Image.open(query), query.read_bytes(), str(tmp_path / "gone.jpg"), None,
                                          str(REPO / "samples" / "images" / "coffee.png")])
    in_memory, as_bytes, gone, nothing, indexed = results
    assert in_memory.error is None and in_memory.duplicates and all(
        _base(p.a.path) == "chelsea" for p in in_memory.duplicates)
    assert {p.a.path for p in as_bytes.duplicates} == {p.a.path for p in copies_index.duplicates_of(query)[0].duplicates}
    assert gone.error.kind == "unreadable" and not gone.duplicates and nothing.error.kind == "not_an_image"
    # a query whose bytes are indexed is a duplicate of that file, by equal bytes
    assert indexed.duplicates[0].a.path == "coffee.png" and indexed.duplicates[0].exact
    assert {_base(p.a.path) for p in indexed.duplicates} == {"coffee"}
    with pytest.raises(simsearch.InvalidArgument, match="the cut"):
        copies_index.duplicates_of(query, cut=0)


def test_cli_match(copies_index, tmp_path):
    ix, query = str(copies_index.directory), str(_new_copy(tmp_path))
    one = CliRunner().invoke(main, ["match", query, "--index", ix, "--format", "json"])
    assert one.exit_code == 0, one.output
    pairs = json.loads(one.output)
    assert pairs and all(p["b"] == query and p["duplicate"] and _base(p["a"]) == "chelsea" for p in pairs)
    table = CliRunner().invoke(main, ["match", query, "--index", ix])
    assert table.output.splitlines()[0].split() == ["rank", "score", "path", "decided_by"]
    listed = tmp_path / "queries.txt"
    listed.write_text(f"{query}\n{tmp_path / 'gone.jpg'}\n")
    both = CliRunner().invoke(main, ["match", "--from-file", str(listed), "--index", ix, "--format", "json"])
    assert both.exit_code == 1 and both.stdout.count('"query"') == 2
    assert both.stderr == "Error: 1 of 2 queries could not be read (see their blocks)\n"
    bad = CliRunner().invoke(main, ["match", str(tmp_path / "gone.jpg"), "--index", ix])
    assert bad.exit_code == 1 and bad.output.startswith("Error: ") and bad.output.count("\n") == 1


def _vectors_only(vectors: np.ndarray) -> Collection:
    n = len(vectors)
    zeros = np.zeros(n, dtype=np.uint64)
    return Collection(np.arange(1, n + 1), [""] * n, [None] * n, np.zeros((n, 8), np.uint64), zeros, zeros,
                      np.ones(n), np.ones(n), vectors, np.ones(n, dtype=bool))


@pytest.mark.parametrize("n", [3, 20, 21, 60])
def test_a_querys_crowding_is_what_it_would_be_indexed(n):
    """The density each row of a pair is measured against, with the query among the rows, as
    ``duplicates`` measures it once the query is indexed."""
    rng = np.random.default_rng(n)
    vectors = rng.standard_normal((n + 1, 16)).astype(np.float32)
    vectors[n] = vectors[0] + 0.1 * vectors[n]  # a query near an indexed row: among its neighbours
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    *_, indexed = pairs_module._neighbour_pairs(_vectors_only(vectors))
    crowding = matching._Crowding(_vectors_only(vectors[:n]))
    [sims] = crowding.similarities(vectors[n:])
    crowding.prepare([np.arange(n)])
    assert crowding.query(sims) == pytest.approx(indexed[n], abs=1e-6)
    assert [crowding.row(r, sims[r]) for r in range(n)] == pytest.approx(indexed[:n].tolist(), abs=1e-6)


def test_hash_only_index_decides_new_photos_too(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    img = Image.open(REPO / "samples" / "images" / "coffee.png").convert("RGB")
    img.save(folder / "coffee.png")
    shutil.copy(REPO / "samples" / "images" / "rocket.jpg", folder / "rocket.jpg")
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1)
        [mirrored, other] = idx.duplicates_of([ImageOps.mirror(img).resize((img.width // 2, img.height // 2)),
                                               Image.open(REPO / "samples" / "images" / "camera.png")])
    assert [p.a.path for p in mirrored.duplicates] == ["coffee.png"] and not other.duplicates


def test_matching_keeps_what_it_read_until_another_process_changes_the_index(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    samples = REPO / "samples" / "images"
    shutil.copy(samples / "coffee.png", folder / "coffee.png")
    camera = Image.open(samples / "camera.png").convert("RGB")
    new_camera = ImageOps.mirror(camera).resize((camera.width // 2, camera.height // 2))
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1)
        [before] = idx.duplicates_of(new_camera)
        held = idx._catalogue
        [coffee] = idx.duplicates_of(samples / "coffee.png")
        assert not before.duplicates and [p.a.path for p in coffee.duplicates] == ["coffee.png"]
        assert idx._catalogue is held  # nothing changed: read once
        shutil.copy(samples / "camera.png", folder / "camera.png")
        with simsearch.open_index(tmp_path / "ix") as writer:  # as another process would
            writer.add([folder], workers=1)
        [after] = idx.duplicates_of(new_camera)
        assert idx._catalogue is not held and [p.a.path for p in after.duplicates] == ["camera.png"]


def test_candidate_pairs_are_kept_for_runs_on_the_same_data(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    samples = REPO / "samples" / "images"
    for name in ("coffee.png", "rocket.jpg"):
        shutil.copy(samples / name, folder / name)
    coffee = Image.open(samples / "coffee.png").convert("RGB")
    computed = []
    real = pairs_module.candidate_search
    monkeypatch.setattr(pairs_module, "candidate_search", lambda col: computed.append(len(col.ids)) or real(col))
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1)
        first = duplicates.decide(idx._reads, "copy")
        again = duplicates.decide(idx._reads, "scene")  # another level on the same data: read back
        assert computed == [2]
        assert np.array_equal(first.decisions.pairs.features, again.decisions.pairs.features)
        ImageOps.mirror(coffee).save(folder / "coffee_mirrored.png")
        with simsearch.open_index(tmp_path / "ix") as writer:  # another process adds a file
            writer.add([folder], workers=1)
        grown = duplicates.decide(idx._reads, "copy")
        assert computed == [2, 3] and grown.decisions.matched().sum() == 1
    kept = next((tmp_path / "ix" / "candidates").glob("pairs-*.npz"))
    kept.write_bytes(b"damaged")
    with simsearch.open_index(tmp_path / "ix", read_only=True) as idx:
        assert duplicates.decide(idx._reads, "copy").decisions.matched().sum() == 1
    assert computed == [2, 3, 3] and kept.read_bytes() == b"damaged"  # read-only: made again, not written


def test_groups_do_not_chain():
    # a-b, b-c, c-d, d-e: a chain of single links; the keeper order is a, b, c, d, e
    left, right = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4])
    assert star_groups(5, left, right, np.arange(5)) == [[0, 1], [2, 3]]
    # an image the keeper missed joins when it matches half the group and two of its members
    left, right = np.array([0, 0, 0, 1, 2]), np.array([1, 2, 3, 4, 4])
    assert star_groups(5, left, right, np.arange(5)) == [[0, 1, 2, 3, 4]]
    # one link to one member is not enough
    assert star_groups(5, np.array([0, 0, 1]), np.array([1, 2, 4]), np.arange(5)) == [[0, 1, 2]]


def test_a_large_family_takes_in_the_copies_its_keeper_missed():
    """An image is compared with its nearest neighbours only, so in a family of 40 copies one the keeper missed
    can match a few members but never half of them: a level's ENOUGH_AGREEING matches let it in."""
    from simsearch.decide import ENOUGH_AGREEING

    n, direct = 41, 20  # the keeper (row 0) matched rows 1 to 20; rows 21 to 40 each match 5 of those
    left = [0] * direct + [m for r in range(direct + 1, n) for m in range(1 + r % 15, 6 + r % 15)]
    right = list(range(1, direct + 1)) + [r for r in range(direct + 1, n) for _ in range(5)]
    left, right, rank = np.array(left), np.array(right), np.arange(n)
    assert star_groups(n, left, right, rank, ENOUGH_AGREEING["copy"]) == [list(range(n))]
    assert star_groups(n, left, right, rank, ENOUGH_AGREEING["scene"]) == [list(range(direct + 1))]
    assert star_groups(n, left, right, rank) == [list(range(direct + 1))]  # half of 21, out of reach
    # an image matching four members, not the keeper, is left out
    stray = np.arange(direct + 1, direct + 5)
    assert star_groups(n + 1, np.append(left, stray), np.append(right, [n] * 4), np.arange(n + 1),
                       ENOUGH_AGREEING["copy"]) == [list(range(n))]


def test_a_large_group_of_equal_files_is_paired_through_hubs_and_stays_whole():
    """Thousands of listings may share one placeholder photo: its copies are each paired with the group's first
    rows (hubs), not with each other, and an image matched to any copy is matched to the hubs too, so star
    grouping still takes in every copy, whichever image keeps the group."""
    from simsearch.pairs import _SAME_CODE_CAP, _equal_pairs, _to_hubs

    copies = 3 * _SAME_CODE_CAP
    values = ["placeholder"] * copies + ["other", None]
    left, right, big = _equal_pairs(values)
    assert len(left) == _SAME_CODE_CAP * (_SAME_CODE_CAP - 1) // 2 + (copies - _SAME_CODE_CAP) * _SAME_CODE_CAP
    assert len(big) == 1 and set(big[0].tolist()) == set(range(copies))
    outsider = copies  # "other": a resized copy, say, found as a neighbour of the last copy only
    linked_left, linked_right = np.append(left, copies - 1), np.append(right, outsider)
    to_left, to_right = _to_hubs(linked_left, linked_right, big, len(values))
    assert sorted(zip(to_left.tolist(), to_right.tolist())) == [(h, outsider) for h in range(_SAME_CODE_CAP)]
    rank = np.arange(len(values))
    rank[outsider] = -1  # the outsider keeps the group (the largest image, say)
    whole = star_groups(len(values), np.append(linked_left, to_left), np.append(linked_right, to_right), rank)
    assert whole == [[outsider, *range(copies)]]
    split = star_groups(len(values), linked_left, linked_right, rank)
    assert len(split[0]) < copies  # without the hub pairs the copies would not all join


def test_placeholder_copies_are_grouped_without_pairing_each_with_each(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    source = REPO / "samples" / "images"
    for n in range(100):
        shutil.copy(source / "coffee.png", folder / f"listing{n:03d}.png")
    for name in ("chelsea.png", "camera.png", "rocket.jpg"):
        shutil.copy(source / name, folder / name)
    idx = simsearch.open_index(tmp_path / "index", create=True)
    idx.add([folder], workers=1)
    decided = duplicates.decide(idx._reads, "copy")
    paths = {r.id: r.path for r in idx.images()}
    copy_rows = [row for row, i in enumerate(decided.collection.ids.tolist()) if "listing" in paths[i]]
    others = set(copy_rows[64:])  # beyond the hubs: never paired with each other (4,950 pairs of each with each)
    pairs = decided.decisions.pairs
    assert not any(a in others and b in others for a, b in zip(pairs.left.tolist(), pairs.right.tolist()))
    groups = idx.duplicates()
    assert len(groups) == 1 and {r.path for r in groups[0]} == {f"listing{n:03d}.png" for n in range(100)}
    idx.close()


def test_verification_survives_tiny_thin_and_unreadable_images(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (3, 2), (10, 20, 30)).save(tiny)
    banner = tmp_path / "banner.png"  # 512 x 1 at the work size: OpenCV refuses it for ORB's pyramid
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1, 3000, 3), dtype=np.uint8)).save(banner)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really")
    photo = keypoints(str(REPO / "samples" / "images" / "chelsea.png"))
    others = [keypoints(str(p)) for p in (tiny, banner, broken, tmp_path / "missing.png")]
    assert len(others[1].points) == 0 and others[2] is None and others[3] is None  # no keypoints; unreadable
    for other in others:
        check = verify(photo, other)
        assert check.inliers == 0 and check.transform is None


def _opencv_matches(query: np.ndarray, train: np.ndarray) -> list[tuple[int, int]]:
    """The matcher verification was calibrated with: OpenCV's brute force, the ratio test, then
    the closest match per train point kept in a dict."""
    import cv2

    good = {}
    for m in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2):
        if len(m) == 2 and m[0].distance < RATIO * m[1].distance:
            if m[0].trainIdx not in good or m[0].distance < good[m[0].trainIdx].distance:
                good[m[0].trainIdx] = m[0]
    return [(m.queryIdx, m.trainIdx) for m in good.values()]


def test_matcher_gives_opencvs_matches_in_order_and_batches_agree(copies_index):
    """RANSAC's samples depend on the order of the matches: the FAISS matcher must give OpenCV's
    matches in OpenCV's order, and one search for many pairs the same verifications as one each."""
    paths = sorted(r.abspath for r in copies_index.images() if _base(r.path) == "chelsea")
    points = [keypoints(p) for p in paths]
    other = keypoints(str(REPO / "samples" / "images" / "coffee.png"))
    a = points[0]
    for b in [*points[1:], other]:
        for descriptors in (b.descriptors, b.mirrored_descriptors):
            query, train = _ratio_matches([descriptors], a.descriptors)[0]
            assert list(zip(query.tolist(), train.tolist())) == _opencv_matches(descriptors, a.descriptors)
    together = verify_many(a, [*points[1:], other, None])
    assert together == [verify(a, b) for b in [*points[1:], other, None]]
    assert sum(v.inliers >= 20 for v in together[:-2]) >= 4 and together[-2].inliers < 20
    # the first image of a pair is never mirrored, so its keypoints may leave the mirror image out
    straight = keypoints(paths[0], mirrored=False)
    assert straight.mirrored_points is None and np.array_equal(straight.descriptors, a.descriptors)
    assert verify_many(straight, points[1:]) == together[: len(points) - 1]
    with pytest.raises(ValueError, match="mirror"):
        verify(a, straight)


def test_verification_in_waves_under_a_keypoint_cap_gives_the_same_verifications(copies_index, monkeypatch):
    """Verification holds the keypoints of the images whose pairs are under way, at most KEYPOINT_CAP of
    them, computing again those it dropped: one image per wave and a cap of two images must give every
    pair the verification that one wave holding all keypoints gives."""
    records = sorted(copies_index.images(), key=lambda r: r.id)[:12]
    paths = [r.abspath for r in records]
    left, right = (list(side) for side in zip(*itertools.combinations(range(len(paths)), 2)))
    computed = []
    real_keypoints = decide.keypoints
    monkeypatch.setattr(decide, "keypoints", lambda path, **kw: computed.append(path) or real_keypoints(path, **kw))
    whole = decide.Decider("copy")._check(records, left, right, set())
    assert sorted(computed) == sorted(paths)  # all held at once: each image computed once
    monkeypatch.setattr(decide, "VERIFY_WAVE", 1)
    monkeypatch.setattr(decide, "KEYPOINT_CAP", 2)
    computed.clear()
    assert decide.Decider("copy")._check(records, left, right, set()) == whole
    assert len(computed) > len(paths)  # dropped keypoints were computed again
    assert sorted(decide.locality_order(left, right)) == sorted(set(left))  # each left image once
    held = set()
    for wave in decide.verification_waves(left, right, cap=2):
        held.update(wave.compute)
        assert {r for k in wave.pairs for r in (left[k], right[k])} <= held
        held.difference_update(wave.drop)
        assert len(held) <= 2
    assert not held  # every image dropped after its last pair
    assert list(decide.verification_waves([], [])) == []


def test_an_image_indexed_under_a_raised_pixel_limit_is_read_back_under_it(copies_index, monkeypatch, tmp_path):
    """An image the indexer took under a raised --max-pixels (a record of 20,000 x 10,000 pixels here) must not
    be refused for its size when verification or a report's thumbnails read it again."""
    first, second = sorted(copies_index.images(), key=lambda r: r.id)[:2]
    huge = dataclasses.replace(first, width=20_000, height=10_000)
    assert huge.max_pixels == 200_000_000 and second.max_pixels == DEFAULT_MAX_PIXELS
    asked = []
    monkeypatch.setattr(decide, "keypoints", lambda path, **kw: asked.append(kw["max_pixels"]))
    decide.Decider("copy")._check([huge, second], [0], [1], set())
    assert sorted(asked) == [DEFAULT_MAX_PIXELS, 200_000_000]
    read = report.decode_file
    monkeypatch.setattr(report, "decode_file", lambda path, **kw: asked.append(kw["max_pixels"]) or read(path))
    assert report._thumbnail(huge, tmp_path / "thumb.jpg") and asked[-1] == 200_000_000


def test_an_interrupted_first_run_keeps_the_verifications_it_finished(copies_index, monkeypatch):
    """Verifications are kept wave by wave (saved every SAVE_EVERY_S, here at once): a first run stopped
    partway leaves its finished work to the next, which verifies fewer pairs than a fresh run."""
    kept = copies_index.directory / "verified"
    real_keypoints, real_verify, calls, verified = decide.keypoints, decide.verify_pairs, [], []

    def counted(path, **kw):
        calls.append(path)
        if stop_after is not None and len(calls) > stop_after:
            raise KeyboardInterrupt
        return real_keypoints(path, **kw)

    def counted_pairs(points, left, right, *args, **kw):
        verified.extend(zip(left, right))
        return real_verify(points, left, right, *args, **kw)

    monkeypatch.setattr(decide, "keypoints", counted)
    monkeypatch.setattr(decide, "verify_pairs", counted_pairs)
    monkeypatch.setattr(decide, "VERIFY_WAVE", 1)
    monkeypatch.setattr(decide, "SAVE_EVERY_S", 0.0)
    shutil.rmtree(kept, ignore_errors=True)
    stop_after = None
    fresh = _pairs(copies_index.duplicates())
    fresh_pairs = len(verified)
    shutil.rmtree(kept, ignore_errors=True)
    stop_after = len(calls) // 2
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        copies_index.duplicates()
    assert sum(len(np.load(f)) for f in kept.glob("pairs-*.npy")) > 0
    verified.clear()
    stop_after = None
    assert _pairs(copies_index.duplicates()) == fresh
    assert 0 < len(verified) < fresh_pairs


def test_a_file_unreadable_at_verification_is_decided_without_it_and_nothing_is_kept(copies_index, tmp_path,
                                                                                     monkeypatch):
    """A file gone since indexing (a drive not mounted) cannot be verified: its pairs keep their cheap
    probability, the run says so, and nothing is kept for them, so the next run with the file back
    verifies them and decides as a fresh run does."""
    kept = copies_index.directory / "verified"
    shutil.rmtree(kept, ignore_errors=True)
    fresh = _pairs(copies_index.duplicates())
    crop = next(r for r in copies_index.images() if r.path == "chelsea__crop30.jpg")
    shutil.rmtree(kept)
    shutil.move(crop.abspath, tmp_path / "away.jpg")
    try:
        with pytest.warns(SimsearchWarning, match=r"1 indexed file\(s\) could not be read .*chelsea__crop30.jpg"):
            copies_index.duplicates()
    finally:
        shutil.move(tmp_path / "away.jpg", crop.abspath)
    real_keypoints, computed = decide.keypoints, []
    monkeypatch.setattr(decide, "keypoints", lambda path, **kw: computed.append(path) or real_keypoints(path, **kw))
    assert _pairs(copies_index.duplicates()) == fresh
    # the pairs of the file that was away are verified again, and only they (with their other images)
    assert crop.abspath in computed and len(computed) < len(copies_index.images()) / 2
    result = CliRunner().invoke(main, ["duplicates", "--index", str(copies_index.directory)])
    assert result.exit_code == 0 and "note:" not in result.output


def test_shipped_models_state_their_provenance():
    data = model_data()
    provenance = data["provenance"]
    assert provenance["made_by"].startswith("python benchmarks/calibrate.py")
    assert "holdout never read" in provenance["data"]
    for level in LEVELS:
        models = data["levels"][level]
        assert 0 < models["cut"] < 1 and 0 <= models["band"][0] < models["band"][1] <= 1
        for name in ("cheap", "verified", "cheap_hashes", "verified_hashes"):
            assert models[name]["trees"] and models[name]["inputs"]
        assert provenance["pair_metrics_before_grouping"][level]["val_embeddings"]["f1"] > 0.7


def test_copy_scores_pairs_with_a_transform_by_its_fitted_model_and_the_rest_by_its_verified_one():
    """Free in the embedding's inputs, the fitted model sees only pairs whose geometry shows the same picture:
    as many inliers as copy's gate asks, or more."""
    models = model_data()["levels"]["copy"]
    fitted = models["verified_fitted"]
    assert fitted["from_inliers"] == models["gate"]["below_inliers"]
    rng = np.random.default_rng(0)
    cols = {name: rng.uniform(0, 1, 200) for name in models["verified"]["inputs"]}
    inliers = rng.integers(0, 40, 200)
    cols["inliers"] = np.log1p(inliers)
    strong = inliers >= fitted["from_inliers"]
    assert strong.any() and not strong.all()
    score = decide.verified_probability(models, "", cols)
    assert np.allclose(score[strong], decide.probability(fitted, {k: v[strong] for k, v in cols.items()}))
    assert np.allclose(score[~strong], decide.probability(models["verified"], {k: v[~strong] for k, v in cols.items()}))
    # hashes only, there are no embedding inputs to free: one verified model
    assert "verified_fitted_hashes" not in models


def test_bad_level_and_cut_are_one_line_errors(copies_index):
    ix = str(copies_index.directory)
    result = CliRunner().invoke(main, ["duplicates", "--level", "room", "--index", ix])
    assert result.exit_code == 2
    with pytest.raises(simsearch.InvalidArgument, match="unknown duplicate level"):
        copies_index.duplicates(level="room")
    with pytest.raises(simsearch.InvalidArgument, match="cut is a probability"):
        copies_index.duplicates(cut=1.5)


def test_every_level_is_documented():
    readme = (REPO / "README.md").read_text()
    for level in LEVELS:
        assert f"--level {level}" in readme


def test_keypoints_are_spread_so_an_overlay_cannot_take_them_over(tmp_path):
    """ORB keeps the strongest corners, and stroked text has the strongest of all: spread over a grid,
    the keypoints still cover the picture under a caption, so the copy verifies."""
    from simsearch.verify import CELL_CAP, GRID, ORB_FEATURES

    img = Image.open(REPO / "samples" / "images" / "coffee.png").convert("RGB")
    w, h = img.size
    captioned = img.copy()
    draw = ImageDraw.Draw(captioned)
    for line, word in enumerate(("SALE -30%", "Best price", "Tel 555 0101")):
        draw.text((w // 20, h // 20 + line * h // 9), word, fill=(255, 255, 255),
                  font=ImageFont.load_default(size=h // 10), stroke_width=3, stroke_fill=(0, 0, 0))
    captioned.save(tmp_path / "captioned.jpg", quality=75)
    img.save(tmp_path / "base.png")
    base, copy = keypoints(str(tmp_path / "base.png")), keypoints(str(tmp_path / "captioned.jpg"))
    for points, size in ((copy.points, copy.size), (copy.mirrored_points, copy.size), (base.points, base.size)):
        cells = np.minimum(GRID - 1, (points * GRID / np.array(size)).astype(int))
        _, counts = np.unique(cells[:, 0] * GRID + cells[:, 1], return_counts=True)
        # a few points may cross a cell's edge: the mirror image's are placed back one pixel off its grid
        assert counts.max() <= 1.05 * CELL_CAP * ORB_FEATURES / GRID**2  # without spreading: 239
    assert verify(base, copy).inliers >= 200  # without spreading: 91 of 1,000


def test_copy_gate_rejects_a_pair_whose_geometry_saw_enough_and_found_no_transform(monkeypatch):
    """Two different cats in a collection with no other cat: the embeddings alone make a case for a copy
    (these are that pair's features on `dups`), the verification does not."""
    gate = model_data()["levels"]["copy"]["gate"]
    assert gate["below_inliers"] >= 5 and 0 < gate["probability"] < 0.01
    cats = Pairs(np.array([0]), np.array([1]), np.array([False]),
                 np.array([[0.65, 0.364, 0.375, 0.375, 0.375, 0.0375, 0.7375]]))
    decider = decide.Decider("copy")
    monkeypatch.setattr(decider, "_verify_all", lambda paths, left, right, given: ([Verification(14, 4, 727, None, 0.0022)], set()))
    found = decider.decide(cats, ["a.jpg", "b.jpg"])
    assert found.verified[0] and found.score[0] <= gate["probability"] and not found.matched()[0] and found.gated[0]
    agreeing = Verification(300, 240, 727, None, 0.001, spread=0.9, agreement=0.95)
    monkeypatch.setattr(decider, "_verify_all", lambda paths, left, right, given: ([agreeing], set()))
    assert decider.decide(cats, ["a.jpg", "b.jpg"]).matched()[0]  # the same pair, its geometry agreeing
    bunched = dataclasses.replace(agreeing, spread=gate["below_spread"] / 2)  # all its inliers on one small patch
    monkeypatch.setattr(decider, "_verify_all", lambda paths, left, right, given: ([bunched], set()))
    assert decider.decide(cats, ["a.jpg", "b.jpg"]).gated[0]
    unlike = dataclasses.replace(agreeing, agreement=gate["below_agreement"] - 0.05)  # the pictures around them differ
    monkeypatch.setattr(decider, "_verify_all", lambda paths, left, right, given: ([unlike], set()))
    assert decider.decide(cats, ["a.jpg", "b.jpg"]).gated[0]
    told = Pair(None, None, "copy", 0.0019, 0.6, False, True, False, {}, None, gated=True)
    assert told.decided_by.startswith("gate")  # explain says what decided


def test_a_pair_the_cheap_model_is_sure_of_is_verified_all_the_same(monkeypatch):
    """Another listing's bedroom, smaller, beside a sparse catalogue (features like such a pair's), and a burst frame
    in a small collection (close, standing far out of a neighbourhood of unrelated pictures): the cheap model is sure
    of both, but every pair in the band is verified, its top being 1, and geometry that finds nothing refuses them."""
    features = np.array([[0.75, 0.3539, 0.2, 0.3906, 0.3125, 0.0009, 0.5487],
                         [0.98, 0.5, 0.0625, 0.0781, 0.0469, 0.0, 0.1]])
    room = Pairs(np.array([0, 0]), np.array([1, 2]), np.array([False, False]), features)
    decider = decide.Decider("copy")
    cheap = decider._cheap(room)
    assert (cheap >= 0.9).all() and model_data()["levels"]["copy"]["band"][1] == 1.0
    assert decider.borderline(room, cheap).tolist() == [0, 1]
    monkeypatch.setattr(decider, "_verify_all", lambda files, left, right, given: (
        [Verification(15, 4, 514, None, 0.0019)] * len(left), set()))
    found = decider.decide(room, ["a.jpg", "b.jpg", "c.jpg"])
    assert found.verified.tolist() == [True, True] and found.matched().tolist() == [False, False]


def test_a_pairs_verification_does_not_depend_on_which_image_was_indexed_first(copies_index):
    """Matching b's points against a's is not symmetric: each pair is verified in an order its files decide, so
    asking for (b, a) gives the same counts as (a, b), and the fit of one is the other's turned round."""
    decided = duplicates.decide(copies_index._reads, "copy", verify=False)
    pairs = decided.decisions.pairs
    rows = np.flatnonzero(~pairs.exact)[:12]
    files = [decided.row_record(r) if r in set(pairs.left[rows]) | set(pairs.right[rows]) else None
             for r in range(len(decided.collection.ids))]
    decider = decide.Decider("copy")
    forward, _ = decider._verify_all(files, pairs.left[rows], pairs.right[rows])
    backward, _ = decider._verify_all(files, pairs.right[rows], pairs.left[rows])
    assert any(check.geometry is not None for check in forward)
    for there, back in zip(forward, backward):
        assert (there.matches, there.inliers, there.keypoints, there.residual, there.spread, there.agreement) == \
            (back.matches, back.inliers, back.keypoints, back.residual, back.spread, back.agreement)
        if there.geometry is not None:
            assert back.transform == there.geometry.transform(reverse=True)


def test_the_keeper_has_the_shape_most_of_its_group_shares(tmp_path):
    def record(name: str, width: int, height: int, link_to: str | None = None):
        path = tmp_path / name
        if link_to:
            path.symlink_to(tmp_path / link_to)
        else:
            path.write_bytes(b"x")
        return ImageRecord(len(name), name, str(path), 1, width, height, "JPEG", 0, name)

    def keeper(*records):
        return records[keeper_ranking(list(records))[0]].path

    original, stretched = record("original.jpg", 400, 300), record("stretched.jpg", 520, 300)
    halved, turned = record("halved.jpg", 200, 150), record("turned.jpg", 300, 400)
    assert keeper(stretched, halved, original, turned) == "original.jpg"  # more pixels, but a shape of its own
    assert keeper(original, stretched) == "stretched.jpg"  # no shape shared by most: the larger picture
    link = record("link.jpg", 400, 300, link_to="original.jpg")
    assert keeper(link, halved, record("odd.jpg", 100, 100)) == "halved.jpg"  # a file before a link, whatever its shape


def test_a_collection_lines_vectors_up_with_its_images_where_some_have_none(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee.png", "rocket.jpg", "camera.png"):
        shutil.copy(REPO / "samples" / "images" / name, folder / name)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1, embed="efficientnet_lite0")
        ImageOps.mirror(Image.open(folder / "coffee.png").convert("RGB")).save(folder / "coffee_mirror.png")
        idx.add([folder], workers=1)  # the new photo gets hashes only
        col = pairs_module.load_collection(idx._reads, "efficientnet_lite0")
        vec_ids, vectors = idx._reads.vectors("efficientnet_lite0")
        names = {r.id: r.path for r in idx.images()}
        assert [names[i] for i in col.ids[~col.has_vector]] == ["coffee_mirror.png"]
        assert np.array_equal(col.ids[col.has_vector], vec_ids)
        assert np.array_equal(col.vectors[col.has_vector], vectors) and not col.vectors[~col.has_vector].any()
        # the mirror image is still a candidate through its hashes, and decided
        assert [sorted(r.path for r in g) for g in idx.duplicates()] == [["coffee.png", "coffee_mirror.png"]]


def _stamped(img: Image.Image, share: int = 14) -> Image.Image:
    """``img`` with a seller's name in its corner, 1/``share`` of its height, as every photo of one seller has it."""
    out = img.convert("RGB")
    size = max(12, out.height // share)
    ImageDraw.Draw(out).text((out.width - size * 8, out.height - size * 2), "(c) 2026 Rentals", fill=(255, 255, 255),
                             font=ImageFont.load_default(size=size), stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return out


def test_photos_stamped_with_one_watermark_are_not_copies_of_each_other(tmp_path):
    """Every photo of a seller carries the same mark: matched point for point on the mark alone, with a transform
    that fits it exactly, but over a small part of each image, so the copy gate holds them apart. A stamped copy of
    a photo is still its copy."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ("coffee.png", "rocket.jpg", "chelsea.png", "camera.png", "text.png", "hubble_deep_field.jpg")
    for name in names:  # one camera's size, as a seller's photos often are
        photo = Image.open(REPO / "samples" / "images" / name).convert("RGB").resize((640, 480))
        _stamped(photo).save(folder / f"{Path(name).stem}.jpg", quality=90)
    shutil.copy(REPO / "samples" / "images" / "coffee.png", folder / "coffee_original.png")
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1, embed="efficientnet_lite0")
        assert [sorted(r.path for r in g) for g in idx.duplicates()] == [["coffee.jpg", "coffee_original.png"]]
        marked = idx.explain(folder / "camera.jpg", folder / "text.jpg")
    gate = model_data()["levels"]["copy"]["gate"]
    assert marked.inputs["inliers"] >= gate["below_inliers"]  # the marks match
    assert marked.inputs["spread"] < gate["below_spread"] and not marked.duplicate
    assert marked.inputs["agreement"] < gate["below_agreement"]  # the rooms around the marks differ
    assert 0.5 < marked.inputs["inlier_share"] <= 1  # on the marks, the matches fit one transform
    assert marked.gated or not marked.verified  # where verification decides the pair, the gate holds it


def test_a_copys_inliers_spread_over_the_picture_and_a_watermarks_do_not(tmp_path):
    img = Image.open(REPO / "samples" / "images" / "chelsea.png").convert("RGB")
    w, h = img.size
    img.save(tmp_path / "base.png")
    img.crop((w // 8, h // 10, w - w // 10, h - h // 12)).resize((w // 2, h // 2)).save(tmp_path / "crop.jpg")
    _stamped(img).save(tmp_path / "stamped.jpg")
    _stamped(Image.open(REPO / "samples" / "images" / "coffee.png")).save(tmp_path / "other.jpg")
    base, crop = keypoints(str(tmp_path / "base.png")), keypoints(str(tmp_path / "crop.jpg"))
    assert verify(base, crop).spread > 0.5
    assert verify(keypoints(str(tmp_path / "stamped.jpg")), keypoints(str(tmp_path / "other.jpg"))).spread < 0.06


def test_a_copys_pictures_agree_where_the_transform_lays_them_together_and_a_large_watermarks_do_not(tmp_path):
    """A mark a fifth of the photo's height spreads its inliers over a fair part of it, but the two photos around
    it still differ; a crop, turned a few degrees and framed, agrees with its base everywhere it shows."""
    img = Image.open(REPO / "samples" / "images" / "chelsea.png").convert("RGB").resize((640, 480))
    w, h = img.size
    img.save(tmp_path / "base.png")
    framed = ImageOps.expand(img.crop((w // 8, h // 10, w - w // 10, h - h // 12)).rotate(4, expand=True), 30, "white")
    framed.resize((framed.width // 2, framed.height // 2)).save(tmp_path / "copy.jpg", quality=70)
    for name, out in (("chelsea", "stamped.jpg"), ("coffee", "other.jpg")):
        photo = Image.open(REPO / "samples" / "images" / f"{name}.png").convert("RGB").resize((640, 480))
        _stamped(photo, share=5).save(tmp_path / out, quality=90)
    copy = verify(keypoints(str(tmp_path / "base.png")), keypoints(str(tmp_path / "copy.jpg")))
    assert copy.inliers >= 50 and copy.agreement > 0.8
    marked = verify(keypoints(str(tmp_path / "stamped.jpg")), keypoints(str(tmp_path / "other.jpg")))
    assert marked.inliers >= 20 and marked.agreement < 0.3


def test_a_kept_verification_reads_back_as_it_was_written(tmp_path):
    img = Image.open(REPO / "samples" / "images" / "rocket.jpg").convert("RGB")
    img.save(tmp_path / "base.png")
    ImageOps.mirror(img).crop((20, 10, img.width - 30, img.height - 5)).save(tmp_path / "copy.jpg")
    check = verify(keypoints(str(tmp_path / "base.png")), keypoints(str(tmp_path / "copy.jpg")))
    assert check.geometry is not None and check.geometry.flipped and check.agreement > 0.8
    kept = verified_module.VerifiedPairs(tmp_path / "pairs.npy", ["ab" * 32, "cd" * 32])
    kept.add([0], [1], [check])
    kept.save()
    assert verified_module.VerifiedPairs(tmp_path / "pairs.npy", ["ab" * 32, "cd" * 32]).lookup([0], [1]) == [check]


def test_agreement_is_measured_on_the_blocks_both_images_show_and_texture():
    x = np.random.default_rng(0).uniform(0, 255, (96, 128)).astype(np.float32)
    assert _block_correlation(x, x.copy()) == pytest.approx(1.0)
    assert _block_correlation(x, 255 - x) == pytest.approx(-1.0)  # a negative agrees nowhere
    shown = np.full_like(x, np.nan)  # outside the other image: only MIN_BLOCKS - 1 whole blocks are shown
    shown[:BLOCK, : (MIN_BLOCKS - 1) * BLOCK] = x[:BLOCK, : (MIN_BLOCKS - 1) * BLOCK]
    assert _block_correlation(x, shown) == 0.0
    shown[:BLOCK, : MIN_BLOCKS * BLOCK + 1] = x[:BLOCK, : MIN_BLOCKS * BLOCK + 1]  # one more whole block
    assert _block_correlation(x, shown) == pytest.approx(1.0)
    flat = np.full_like(x, 128.0)  # a flat picture says nothing, wherever it is shown
    flat[:BLOCK, : (MIN_BLOCKS - 1) * BLOCK] = x[:BLOCK, : (MIN_BLOCKS - 1) * BLOCK]
    assert _block_correlation(x, flat) == 0.0


def _shot(img: Image.Image, left: bool, turn: float) -> Image.Image:
    """Another shot of ``img``'s scene: the left or right 70 % of it, seen through a camera turned by ``turn``
    degrees (a homography, about the window's centre), a little darker (``benchmarks/shots.py`` makes them so)."""
    import cv2  # noqa: PLC0415

    pixels = np.asarray(img.convert("RGB"))
    width = round(pixels.shape[1] * 0.7)
    window = pixels[:, :width] if left else pixels[:, -width:]
    h, w = window.shape[:2]
    camera = np.array([[1.2 * w, 0, w / 2], [0, 1.2 * w, h / 2], [0, 0, 1]])
    a = np.radians(turn)
    turned = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    view = camera @ turned @ np.linalg.inv(camera)
    centre = view @ np.array([w / 2, h / 2, 1.0])  # the turn's perspective, without the shift it also makes
    view = np.array([[1, 0, w / 2 - centre[0] / centre[2]], [0, 1, h / 2 - centre[1] / centre[2]], [0, 0, 1]]) @ view
    warped = cv2.warpPerspective(window, view, (w, h), borderMode=cv2.BORDER_REFLECT)
    kept = Image.fromarray(warped).crop((w // 25, h // 25, w - w // 25, h - h // 25))  # not the reflected corners
    return ImageEnhance.Brightness(kept).enhance(0.9)


def test_a_copy_lies_within_its_original_and_another_shot_overhangs_it(tmp_path):
    """A crop lies within its base, and a framed, tilted copy holds its base within it (the frame and the filled
    corners are flat: no keypoints); two overlapping shots of one scene each show much the other does not."""
    img = Image.open(REPO / "samples" / "images" / "coffee.png").convert("RGB").resize((1200, 800))
    w, h = img.size
    img.save(tmp_path / "base.png")
    img.crop((w // 6, h // 8, w - w // 10, h - h // 6)).resize((w // 2, h // 3)).save(tmp_path / "crop.jpg")
    framed = ImageOps.expand(img.rotate(5, expand=True, fillcolor="white"), 40, "black")
    framed.resize((framed.width // 2, framed.height // 2)).save(tmp_path / "framed.jpg", quality=70)
    _shot(img, True, 5).save(tmp_path / "left.jpg", quality=90)
    _shot(img, False, -5).save(tmp_path / "right.jpg", quality=90)
    base = keypoints(str(tmp_path / "base.png"))
    for name in ("crop.jpg", "framed.jpg"):
        copy = verify(base, keypoints(str(tmp_path / name)))
        assert copy.inliers >= 40 and copy.overhang < 0.05, name
    shots = verify(keypoints(str(tmp_path / "left.jpg")), keypoints(str(tmp_path / "right.jpg")))
    assert shots.inliers >= 40 and shots.overhang > 0.3  # what they share fits one transform as a copy does
    assert shots.reversed().overhang == shots.overhang


def test_two_overlapping_shots_are_not_copies_and_the_gate_says_why(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    img = Image.open(REPO / "samples" / "images" / "coffee.png").convert("RGB").resize((1200, 800))
    _shot(img, True, 4).save(folder / "left.jpg", quality=90)
    _shot(img, False, -4).save(folder / "right.jpg", quality=90)
    rocket = Image.open(REPO / "samples" / "images" / "rocket.jpg").convert("RGB")
    rocket.save(folder / "rocket.png")
    rocket.crop((40, 30, rocket.width - 60, rocket.height - 20)).save(folder / "rocket_crop.jpg", quality=80)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([folder], workers=1, embed="efficientnet_lite0")
        assert [sorted(r.path for r in g) for g in idx.duplicates()] == [["rocket.png", "rocket_crop.jpg"]]
        shots = idx.explain(folder / "left.jpg", folder / "right.jpg")
    gate = model_data()["levels"]["copy"]["gate"]
    assert shots.inputs["overhang"] >= gate["from_overhang"] and shots.inputs["inliers"] >= gate["below_inliers"]
    assert shots.gated and not shots.duplicate
