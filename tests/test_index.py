import os
import shutil

import pytest

import simsearch
from simsearch.duplicates import keeper_order
from simsearch.errors import IndexNotFound, IndexTooNew, InvalidArgument

from .conftest import REPO


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """(index, photos) built once for the tests that only read them."""
    from make_variants import make_variants

    photos = tmp_path_factory.mktemp("shared") / "photos"
    shutil.copytree(REPO / "samples" / "images", photos)
    make_variants(photos)
    idx = simsearch.open_index(photos.parent / "index", create=True)
    idx.add([photos], workers=1)
    yield idx, photos
    idx.close()


def _paths(groups):
    return [sorted(r.path for r in g) for g in groups]


def test_search_finds_edited_copies_first(shared):
    built, photos = shared
    matches = built.search(photos / "edits" / "coffee_q70.jpg", k=6)
    top = {m.image.path for m in matches[:5]}
    assert {"coffee.png", "edits/coffee_q70.jpg", "edits/coffee.webp", "edits/coffee_half.png"} <= top
    assert matches[0].distance == 0


def test_query_image_need_not_be_indexed(shared, tmp_path):
    built, _ = shared
    from PIL import Image

    outside = tmp_path / "outside.jpg"
    Image.open(REPO / "samples" / "images" / "rocket.jpg").rotate(2).save(outside, quality=80)
    match = built.search(outside, by="dhash", k=1)[0]
    assert match.image.path in {"rocket.jpg", "edits/rocket_q70.jpg", "edits/rocket.webp", "edits/rocket_grey.png"}


def test_max_distance_filters(shared):
    built, photos = shared
    everything = built.search(photos / "chelsea.png", k=30)
    near = built.search(photos / "chelsea.png", k=30, max_distance=2)
    assert near and all(m.distance <= 2 for m in near)  # chelsea's copies and edits are within 2 bits
    assert len(near) < len(everything) and near == [m for m in everything if m.distance <= 2]


def test_exact_duplicates_cover_bytes_and_pixels(built, photos):
    shutil.copy(photos / "brick.png", photos / "brick_copy.png")
    built.add([photos], workers=1)
    groups = _paths(built.duplicates(by="exact"))
    assert ["brick.png", "brick_copy.png"] in groups  # same bytes
    assert any({"chelsea.png", "modes/chelsea_exact_copy.png"} <= set(g) for g in groups)  # same pixels
    assert not any("edits/chelsea_q70.jpg" in g for g in groups)


def test_near_duplicate_groups_keep_the_largest_first(shared):
    built, _ = shared
    groups = built.duplicates(by="phash")
    coffee = next(g for g in groups if any(r.path == "coffee.png" for r in g))
    assert {r.path for r in coffee} >= {"coffee.png", "edits/coffee_half.png", "edits/coffee_grey.png"}
    assert coffee[0].width * coffee[0].height == max(r.width * r.height for r in coffee)
    assert not any("text.png" in {r.path for r in g} for g in groups)


def test_rows_indexed_before_picture_sizes_are_completed(built, photos, tmp_path):
    """An index made before the picture size was recorded (migration 0007) gets it on its next run, and a
    bordered copy then no longer outranks its original as the keeper."""
    import sqlite3

    from PIL import Image, ImageOps

    chelsea = Image.open(photos / "chelsea.png").convert("RGB")
    ImageOps.expand(chelsea, border=40, fill=(0, 0, 0)).save(photos / "chelsea_framed.png")
    built.add([photos], workers=1)
    with sqlite3.connect(tmp_path / "index" / "simsearch.db") as con:
        sizes = dict((r[0], r[1:]) for r in con.execute("SELECT relpath, picture_width, picture_height FROM images"))
        decoded = con.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0]
        con.execute("UPDATE images SET picture_width = NULL, picture_height = NULL")
    assert sizes["chelsea.png"] == chelsea.size  # to a line of the work image, a blended line of frame or two:
    assert all(0 <= got - want <= 0.03 * want for got, want in zip(sizes["chelsea_framed.png"], chelsea.size))
    summary = built.add([photos], workers=1)
    assert summary.refreshed == summary.indexed == decoded
    with sqlite3.connect(tmp_path / "index" / "simsearch.db") as con:
        assert dict((r[0], r[1:]) for r in con.execute("SELECT relpath, picture_width, picture_height FROM images")) \
            == sizes
    assert built.add([photos], workers=1).unchanged == summary.scanned
    reads = built._reads
    records = reads.records([reads.image_id(photos / name) for name in ("chelsea_framed.png", "chelsea.png")])
    assert min(records.values(), key=keeper_order).path == "chelsea.png"


def test_rerun_skips_unchanged_and_tracks_changes(built, photos):
    again = built.add([photos], workers=1)
    assert again.indexed == 0 and again.unchanged == again.scanned
    (photos / "grass.png").unlink()
    shutil.copy(photos / "brick.png", photos / "camera.png")  # changed content
    os.utime(photos / "text.png", ns=(1, 1))  # same bytes, new mtime: no re-decode
    summary = built.add([photos], workers=1)
    assert (summary.removed, summary.indexed, summary.changed) == (1, 1, 2)
    assert built.stats()["removed"] == 1
    assert "grass.png" not in {r.path for r in built.images()}
    assert built.search(photos / "brick.png", k=2)[1].image.path == "camera.png"


def test_a_folder_moved_away_is_noted_and_indexing_its_old_path_marks_its_images_removed(tmp_path):
    """After `mv photos album; simsearch index album`, every photo would pair with its own ghost as an exact
    duplicate (the ghost kept): the old folder is named in a note, and indexing its old path, which a typo
    check would refuse, marks its images removed. Moved back, they are restored without decoding again."""
    from click.testing import CliRunner

    from simsearch.cli import main

    photos, album, ix = tmp_path / "photos", tmp_path / "album", str(tmp_path / "ix")
    photos.mkdir()
    for name in ("rocket.jpg", "coffee.png"):
        shutil.copy(REPO / "samples" / "images" / name, photos / name)
    run = CliRunner().invoke
    assert run(main, ["index", str(photos), "--index", ix, "--workers", "1"]).exit_code == 0
    photos.rename(album)
    moved = run(main, ["index", str(album), "--index", ix, "--workers", "1"])
    note = f"note: {photos} no longer exists, but 2 images indexed from it are still listed: run simsearch index"
    assert moved.exit_code == 0 and note in moved.output and "2 taken from identical files" in moved.output
    assert note in run(main, ["duplicates", "--by", "exact", "--index", ix]).output
    with simsearch.open_index(ix) as idx:
        assert idx.gone_roots() == [(str(photos), 2)] and len(idx.duplicates(by="exact")) == 2
    typo = run(main, ["index", str(tmp_path / "fotos"), "--index", ix])
    assert typo.exit_code == 1 and "no such file or folder" in typo.output
    gone = run(main, ["index", str(photos), "--index", ix])
    assert gone.exit_code == 0 and gone.output.startswith("indexed 0, failed 0, unchanged 0, removed 2")
    with simsearch.open_index(ix) as idx:
        assert idx.gone_roots() == [] and idx.duplicates(by="exact") == [] and idx.stats()["images"] == 2
    album.rename(photos)
    back = run(main, ["index", str(photos), "--index", ix])
    assert back.output.startswith("indexed 0, failed 0, unchanged 2, removed 0"), back.output


def test_a_file_list_over_many_folders_is_one_stream_of_batches(tmp_path):
    """Each folder of a file list is a root; their files go through the workers as one stream, and a batch
    that holds several roots' files writes each under its own root: the index is the one the folders give."""
    samples = sorted((REPO / "samples" / "images").iterdir())
    listed = []
    for n, sample in enumerate(samples):
        folder = tmp_path / "listings" / f"{n:03d}"
        folder.mkdir(parents=True)
        for copy in ("a", "b"):
            shutil.copy(sample, folder / f"{copy}{sample.suffix}")
            listed.append(str(folder / f"{copy}{sample.suffix}"))
    (tmp_path / "list.txt").write_text("\n".join(listed))
    by_list = simsearch.open_index(tmp_path / "by-list", create=True)
    from simsearch.indexer.scan import read_file_list

    summary = by_list.add(read_file_list(str(tmp_path / "list.txt")), workers=2, batch_size=3)
    assert summary.indexed == len(listed) and summary.failed == 0
    by_folder = simsearch.open_index(tmp_path / "by-folder", create=True)
    by_folder.add(sorted({os.path.dirname(p) for p in listed}), workers=1)

    def rows(idx):
        return sorted((r.abspath, r.sha256, r.width, r.height) for r in idx.images())

    assert rows(by_list) == rows(by_folder) and len(by_list.root_paths()) == len(samples)
    for method in ("phash", "dhash", "whash", "ahash"):
        ids, codes = by_list.hash_codes(method)
        paths = {r.id: r.abspath for r in by_list.images()}
        ids2, codes2 = by_folder.hash_codes(method)
        paths2 = {r.id: r.abspath for r in by_folder.images()}
        assert sorted(zip(map(paths.get, ids.tolist()), codes.tolist())) == sorted(
            zip(map(paths2.get, ids2.tolist()), codes2.tolist()))
    again = by_list.add(read_file_list(str(tmp_path / "list.txt")), workers=2, batch_size=3)
    assert again.unchanged == len(listed) and again.indexed == 0
    by_list.close()
    by_folder.close()


@pytest.fixture
def nested(tmp_path):
    """photos/ with two samples and photos/sub/ with two more: (photos folder, its sub folder)."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name, where in (("rocket.jpg", photos), ("coffee.png", photos), ("chelsea.png", photos / "sub"),
                        ("camera.png", photos / "sub")):
        shutil.copy(REPO / "samples" / "images" / name, where / name)
    return photos, photos / "sub"


def _listing(idx) -> list[tuple[str, int]]:
    return sorted((r.abspath, r.id) for r in idx.images())


def test_a_folder_inside_an_indexed_one_is_indexed_under_it(nested, tmp_path):
    """Indexing a subfolder (or a file in it, or the folder through a link) after its parent indexes nothing
    twice: each file stays one image, and a file gone from the subfolder is marked removed, no other."""
    photos, sub = nested
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([photos], workers=1)
    before = _listing(idx)
    assert idx.add([sub], workers=1).unchanged == 2
    assert idx.add([sub / "camera.png"], workers=1).unchanged == 1
    (tmp_path / "link").symlink_to(photos)
    assert idx.add([tmp_path / "link" / "sub"], workers=1).unchanged == 2
    assert _listing(idx) == before and len(idx.root_paths()) == 1 and idx.duplicates(by="exact") == []
    (sub / "camera.png").unlink()
    again = idx.add([sub], workers=1)
    assert (again.removed, again.unchanged) == (1, 1) and len(idx.images()) == 3
    shutil.rmtree(sub)
    with pytest.raises(InvalidArgument, match=f"no such file or folder: {sub} \\(if it was deleted: index {photos} "
                                              "again to mark what was indexed from it removed\\)"):
        idx.add([sub], workers=1)
    idx.close()


def test_a_folder_above_an_indexed_one_absorbs_it_and_keeps_its_images(nested, tmp_path):
    """Indexing the parent of an indexed folder moves that folder's images under the parent (same ids, so
    their embeddings, tags and clusters stay); an index where both already listed the files (as earlier
    versions left it) keeps one row of each."""
    from simsearch.indexer import write

    photos, sub = nested
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([sub], workers=1)
    inner = {os.path.basename(p): i for p, i in _listing(idx)}
    summary = idx.add([photos], workers=1)
    assert (summary.new, summary.unchanged) == (2, 2) and len(idx.root_paths()) == 1
    assert {os.path.basename(p): i for p, i in _listing(idx) if "/sub/" in p} == inner
    assert [r.path for r in idx.images() if r.id in inner.values()] == ["sub/camera.png", "sub/chelsea.png"]
    listed = _listing(idx)
    with idx.atomic() as conn:  # the files of sub/ listed a second time, under a root of their own
        twin = write.root_id(conn, str(sub))
        rows = [{"relpath": os.path.basename(r.path), "size": r.size, "mtime_ns": r.mtime_ns, "status": "ok",
                 "error": None, "sha256": r.sha256, "phash": 1} for r in idx.images() if r.id in inner.values()]
        write.write_files(conn, twin, rows, {})
    assert len(idx.images()) == 6
    idx.add([photos], workers=1)
    assert _listing(idx) == listed and idx.duplicates(by="exact") == []  # the outer rows stay, the twins go
    shutil.copy(REPO / "samples" / "images" / "grass.png", sub / "grass.png")
    assert idx.add([sub], workers=1).new == 1  # under the outer root, not the twins' leftover one
    assert len(idx.images()) == 5 and idx.duplicates(by="exact") == []
    idx.close()


def test_a_reader_sees_a_folder_another_process_indexed(nested, tmp_path):
    """A long-lived reader (a server) has read the roots; another process indexes a new folder: the reader's
    listings include its images instead of failing on a root it did not know."""
    photos, _ = nested
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(REPO / "samples" / "images" / "grass.png", other / "grass.png")
    with simsearch.open_index(tmp_path / "ix", create=True) as writer:
        writer.add([photos], workers=1)
        with simsearch.open_index(tmp_path / "ix") as reader:
            assert len(reader.images()) == 4  # the roots are read, and kept
            writer.add([other], workers=1)
            assert str(other / "grass.png") in {r.abspath for r in reader.images()}


def test_bad_files_are_recorded_and_do_not_stop_the_run(built, photos):
    before = built.stats()["images"]
    bad = photos / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes((photos / "rocket.jpg").read_bytes()[:3000])
    (bad / "notes.png").write_text("not an image")
    shutil.copy(photos / "chelsea.png", bad / "png_named.jpg")
    (bad / "loop_a.jpg").symlink_to(bad / "loop_b.jpg")
    (bad / "loop_b.jpg").symlink_to(bad / "loop_a.jpg")
    os.mkfifo(bad / "pipe.jpg")
    (bad / os.fsdecode(b"caf\xe9.png")).write_bytes((photos / "coffee.png").read_bytes())
    summary = built.add([photos], workers=1)
    kinds = {f["path"]: f["kind"] for f in built.failures()}
    assert kinds == {
        "bad/empty.jpg": "empty", "bad/truncated.jpg": "corrupt", "bad/notes.png": "not_an_image",
        "bad/loop_a.jpg": "unreadable", "bad/loop_b.jpg": "unreadable", "bad/pipe.jpg": "not_a_file",
    }
    assert summary.failed == 6 and summary.indexed == 2
    assert built.stats()["images"] == before + 2
    paths = {r.path for r in built.images()}
    assert "bad/png_named.jpg" in paths and "bad/caf\\xe9.png" in paths
    # the non-UTF-8 file is found again on disk through its record
    rec = next(r for r in built.images() if r.path == "bad/caf\\xe9.png")
    assert os.path.exists(rec.abspath)


def test_failure_is_cleared_when_the_file_is_fixed(built, photos):
    broken = photos / "broken.png"
    broken.write_bytes(b"garbage")
    built.add([photos], workers=1)
    assert built.stats()["failures"] == 1
    shutil.copy(photos / "camera.png", broken)
    built.add([photos], workers=1)
    assert built.stats()["failures"] == 0 and "broken.png" in {r.path for r in built.images()}


def test_adding_a_feature_keeps_images_taken_under_a_larger_pixel_limit(tmp_path):
    """A run that adds embeddings to unchanged files decodes them again: under a lower --max-pixels than the
    run that took them (the default, after a run that raised it), they must stay indexed, not turn into
    failures that drop them from the index."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(REPO / "samples" / "images" / name, folder / name)
    idx = simsearch.open_index(tmp_path / "index", create=True)
    idx.add([folder], workers=1)
    summary = idx.add([folder], workers=1, embed="efficientnet_lite0", max_pixels=1_000)
    assert summary.failed == 0 and summary.embedded == 2
    assert {r.path for r in idx.images()} == {"chelsea.png", "coffee.png"} and idx.stats()["failures"] == 0
    (folder / "coffee.png").write_bytes((REPO / "samples" / "images" / "camera.png").read_bytes())  # new bytes
    assert idx.add([folder], workers=1, max_pixels=1_000).failed == 1  # a changed file meets this run's limit


def test_a_file_refused_as_too_large_is_read_once_the_limit_admits_it(tmp_path):
    """The refusal says to raise --max-pixels, and a run that raises it reads the file: it was left as an
    unchanged failure. Under the same limit it is not read again."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(REPO / "samples" / "images" / name, folder / name)
    idx = simsearch.open_index(tmp_path / "index", create=True)
    assert idx.add(folder, workers=1, max_pixels=1_000).failed == 2  # one path: a Path raised TypeError
    assert {f["kind"] for f in idx.failures()} == {"too_large"}
    assert idx.add(str(folder), workers=1, max_pixels=1_000).unchanged == 2  # a str was read letter by letter
    raised = idx.add([folder], workers=1)
    assert (raised.indexed, raised.failed, raised.refreshed) == (2, 0, 2)
    assert {r.path for r in idx.images()} == {"chelsea.png", "coffee.png"} and idx.stats()["failures"] == 0


def test_worker_pool_gives_the_same_index(photos, tmp_path):
    one = simsearch.open_index(tmp_path / "one", create=True)
    two = simsearch.open_index(tmp_path / "two", create=True)
    one.add([photos], workers=1)
    two.add([photos], workers=2, batch_size=3)
    rows = lambda idx: sorted((r.path, r.sha256, r.width) for r in idx.images())  # noqa: E731
    assert rows(one) == rows(two)
    assert _paths(one.duplicates()) == _paths(two.duplicates())


def test_invalid_arguments_raise_library_errors(built, photos, tmp_path):
    with pytest.raises(InvalidArgument):
        built.search(photos / "camera.png", k=0)
    with pytest.raises(InvalidArgument):
        built.search(photos / "camera.png", by="nohash")
    with pytest.raises(InvalidArgument):
        built.duplicates(by="phash", max_distance=70)
    with pytest.raises(InvalidArgument):
        built.add([tmp_path / "nowhere"])
    with pytest.raises(IndexNotFound):
        simsearch.open_index(tmp_path / "missing")


def test_index_newer_than_code_is_refused(built, tmp_path):
    with built.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(IndexTooNew, match="upgrade simsearch"):
        simsearch.open_index(built.directory)


def test_any_sqlalchemy_url_works(photos, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    idx = simsearch.open_index(tmp_path / "ix", db=url, create=True)
    idx.add([photos / "chelsea.png", photos / "coffee.png"], workers=1)
    assert (tmp_path / "elsewhere.db").exists() and len(simsearch.open_index(tmp_path / "ix", db=url).images()) == 2


def test_importing_simsearch_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, simsearch; print('torch' in sys.modules, 'indexer' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "False"]


def test_shared_edge_cases_are_reported_and_lose_nothing(built, photos):
    from .conftest import shared

    before = {r.path for r in built.images()}
    target = photos / "edge"
    shutil.copytree(shared("edge_cases"), target)
    summary = built.add([photos], workers=1)
    after = {r.path for r in built.images()}
    assert before <= after
    kinds = {f["path"]: f["kind"] for f in built.failures()}
    assert kinds.get("edge/imagededup__ukbench09268_corrupt.jpg") in {"corrupt", "not_an_image"}
    assert {"edge/imagededup__giphy.gif", "edge/chilland__neg_png_bytes.jpg",
            "edge/imagededup__ukbench09380_jpeg_bytes.png"} <= after
    assert summary.failed == len(kinds) and summary.indexed + summary.failed == summary.new


def test_head_revision_constant_matches_the_migrations():
    from alembic.script import ScriptDirectory

    from simsearch import store

    assert ScriptDirectory(str(store.migrations_dir())).get_current_head() == store.HEAD_REVISION
