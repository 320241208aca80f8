"""Bad input never takes a run down: any decoder error, and a worker process that dies."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

import simsearch
from simsearch.cli import main
from simsearch.errors import ImageError
from simsearch.imageio import decode

from .conftest import REPO

CHELSEA = REPO / "samples" / "images" / "chelsea.png"


def _corrupt_avif() -> bytes:
    """A real AVIF with its last 100 bytes zeroed: Pillow raises RuntimeError decoding it."""
    buf = io.BytesIO()
    Image.open(CHELSEA).convert("RGB").save(buf, "AVIF")
    data = bytearray(buf.getvalue())
    data[-100:] = bytes(100)
    return bytes(data)


@pytest.fixture(scope="module")
def avif_bytes():
    try:
        return _corrupt_avif()
    except (KeyError, OSError) as exc:
        pytest.skip(f"this Pillow cannot write AVIF: {exc}")


def _many_photos(folder, n: int):
    """``n`` distinct small photos (crops of the samples), enough to start worker processes."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((REPO / "samples" / "images").glob("*"))
    for k in range(n):
        img = Image.open(sources[k % len(sources)]).convert("RGB")
        w, h = img.size
        step = k // len(sources)
        img.crop((step * 3, step * 2, w - step, h - step * 2)).resize((160, 120)).save(folder / f"p{k:03d}.png")


def test_any_decoder_error_is_a_recorded_failure(avif_bytes):
    with pytest.raises(ImageError) as err:
        decode(avif_bytes)
    assert err.value.kind == "corrupt"
    assert "AVIF" in str(err.value)


def test_corrupt_avif_does_not_abort_a_run(tmp_path, avif_bytes):
    photos = tmp_path / "photos"
    _many_photos(photos, 50)
    (photos / "bad.avif").write_bytes(avif_bytes)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        summary = idx.add([photos], workers=2)
        assert (summary.indexed, summary.failed) == (50, 1)
        [failure] = idx.failures()
        assert failure["path"] == "bad.avif" and failure["kind"] == "corrupt"
        assert idx.stats()["images"] == 50
        again = idx.add([photos], workers=2)  # a re-run neither crashes nor redoes the good files
        assert again.unchanged == 51


def test_search_with_corrupt_query_is_one_line(tmp_path, avif_bytes, photos):
    bad = tmp_path / "bad.avif"
    bad.write_bytes(avif_bytes)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([photos], workers=1)
    result = CliRunner().invoke(main, ["search", str(bad), "--index", str(tmp_path / "ix"), "--by", "phash"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}: cannot decode AVIF data") and result.output.count("\n") == 1


# run in a fresh interpreter, as a command runs: its workers fork (this test session has loaded models, so its own
# workers start from a fork server) and inherit the decoder patched to kill its process on one file
_KILLER_RUN = """
import json, os, signal, sys
import simsearch
import simsearch.indexer.features as features

real_decode = features.decode

def fatal_decode(data, **kw):
    if b"KILL-THE-WORKER" in data:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_decode(data, **kw)

features.decode = fatal_decode
with simsearch.open_index(sys.argv[2], create=True) as idx:
    summary = idx.add([sys.argv[1]], workers=2)
    print(json.dumps({"indexed": summary.indexed, "failed": summary.failed, "images": len(idx.images()),
                      "failures": [(f["path"], f["kind"]) for f in idx.failures()]}))
"""


def test_a_worker_that_dies_costs_only_its_file(tmp_path):
    """A decoder that kills its process (as a segfault or the OOM killer would) on one file."""
    photos = tmp_path / "photos"
    _many_photos(photos, 60)
    shutil.copy(photos / "p007.png", photos / "p030-killer.png")
    with open(photos / "p030-killer.png", "ab") as fh:
        fh.write(b"KILL-THE-WORKER")
    run = subprocess.run([sys.executable, "-c", _KILLER_RUN, str(photos), str(tmp_path / "ix")], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {"indexed": 60, "failed": 1, "images": 60,
                                                       "failures": [["p030-killer.png", "crashed"]]}


def test_workers_fork_only_before_a_runtime_starts_its_threads(monkeypatch, tmp_path):
    """A fork copies the locks other threads hold; once a runtime with a thread pool is loaded (as in this test
    session), workers start from a fork server, and a run still indexes everything."""
    import onnxruntime
    from simsearch.indexer import workers

    for name in workers.THREADED:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert workers._start_method("fork") == "fork"
    monkeypatch.setitem(sys.modules, "onnxruntime", onnxruntime)
    assert workers._start_method("fork") == "forkserver" and workers._start_method("spawn") == "spawn"
    _many_photos(tmp_path / "photos", 40)
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        assert idx.add([tmp_path / "photos"], workers=2).indexed == 40


def test_usage_errors_are_one_line_and_help_is_unchanged():
    bad = subprocess.run([sys.executable, "-m", "simsearch.cli", "duplicates", "--bogus"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr == "Error: No such option '--bogus'.\n"
    helped = subprocess.run([sys.executable, "-m", "simsearch.cli", "duplicates", "--help"], capture_output=True,
                            text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: ") and "--level" in helped.stdout


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "Error: no such file or folder: "),
    (["{photos}", "--db", "notaurl"], "Error: not a database URL: 'notaurl'"),
])
def test_bad_index_runs_fail_in_one_line_and_leave_nothing(tmp_path, args, message):
    target = tmp_path / "new-index"
    args = [a.format(missing=tmp_path / "nope", photos=REPO / "samples" / "images") for a in args]
    result = CliRunner().invoke(main, ["index", *args, "--index", str(target)])
    assert result.exit_code == 1 and result.output.startswith(message) and result.output.count("\n") == 1
    assert not target.exists()


def test_a_missing_database_driver_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as on a machine without the postgres extra
    target = tmp_path / "pg-index"
    result = CliRunner().invoke(main, ["index", str(REPO / "samples" / "images"), "--index", str(target),
                                       "--db", "postgresql://simsearch@127.0.0.1:9/none"])
    assert result.exit_code == 1 and "the database driver 'psycopg' is not installed" in result.output
    assert not target.exists()


@pytest.fixture
def moved(tmp_path):
    """An index of two exact copies and another photo, one copy moved aside: (index, manifest, lines)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(REPO / "samples" / "images" / "coffee.png", photos / name)
    shutil.copy(REPO / "samples" / "images" / "rocket.jpg", photos / "rocket.jpg")
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([photos], workers=1)
    manifest = tmp_path / "moves.jsonl"
    assert idx.move_duplicates(tmp_path / "aside", manifest, by="exact") == (1, 1, [])
    yield idx, manifest, manifest.read_text().splitlines()
    idx.close()


def _forged(entry: dict, **changes) -> str:
    import json

    return json.dumps({**entry, **changes})


def test_undo_refuses_a_forged_manifest_whole(moved, tmp_path):
    import json

    idx, manifest, [line] = moved
    entry = json.loads(line)
    stranger = tmp_path / "stranger.png"
    shutil.copy(REPO / "samples" / "images" / "chelsea.png", stranger)
    forgeries = {
        "never moved": _forged(entry, to=str(stranger), **{"from": str(tmp_path / "photos" / "rocket.jpg")}),
        "not an absolute, normal path": _forged(entry, **{"from": entry["from"].replace("/photos/", "/photos/../photos/")}),
        "relative": _forged(entry, to="aside/b.png"),
        "SHA-256 differs": None,
    }
    for problem, bad in forgeries.items():
        if bad is None:  # the moved file swapped for another
            shutil.copy(entry["to"], tmp_path / "keep.png")
            shutil.copy(stranger, entry["to"])
            bad = line
        manifest.write_text(line + "\n" + bad + "\n")
        result = CliRunner().invoke(main, ["undo", str(manifest), "--index", str(idx.directory)])
        first_bad = "line 1" if bad == line else "line 2"  # the swapped file makes the genuine line bad too
        assert result.exit_code == 1 and first_bad in result.output and "nothing was moved" in result.output, problem
        assert len(result.output.strip().splitlines()) == 1
        assert not os.path.exists(entry["from"]) and idx.stats()["removed"] == 1, problem  # line 1 was not applied
        if problem == "SHA-256 differs":
            shutil.copy(tmp_path / "keep.png", entry["to"])


def test_undo_updates_the_index_and_can_be_run_again(moved):
    import json

    idx, manifest, [line] = moved
    entry = json.loads(line)
    assert idx.undo(manifest) == (1, 0)
    assert os.path.isfile(entry["from"]) and not os.path.exists(entry["to"]) and idx.stats()["removed"] == 0
    assert idx.undo(manifest) == (0, 1)  # an interrupted or repeated undo finds it back already


@pytest.fixture
def copies(tmp_path):
    """An index of three samples, each with two exact copies: (index, {sample: its group's paths, keeper first})."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.png", "rocket.jpg", "camera.png"):
        for n in range(3):
            shutil.copy(REPO / "samples" / "images" / name, photos / f"{n}_{name}")
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([photos], workers=1)
    groups = {g[0].path.split("_", 1)[1]: [r.abspath for r in g] for g in idx.duplicates(by="exact")}
    yield idx, groups
    idx.close()


def test_moving_duplicates_leaves_stale_files_and_their_groups_in_place(copies, tmp_path):
    """A file gone or changed since indexing is not moved, nor is any member of a group whose keeper is:
    the others move, the run goes on, and undo puts back exactly what moved."""
    idx, groups = copies
    os.remove(groups["coffee.png"][0])  # a keeper gone: its copies are the only ones left
    with open(groups["rocket.jpg"][1], "ab") as fh:  # a member edited since it was indexed
        fh.write(b"more")
    os.remove(groups["camera.png"][2])  # a member gone
    os.utime(groups["camera.png"][1], ns=(0, 0))  # touched only: same bytes, still the indexed file
    manifest = tmp_path / "moves.jsonl"
    done = idx.move_duplicates(tmp_path / "aside", manifest, by="exact")
    assert (done.moved, done.groups) == (2, 3)
    assert dict(done.skipped) == {
        groups["coffee.png"][1]: f"its keeper {groups['coffee.png'][0]} is gone since it was indexed",
        groups["coffee.png"][2]: f"its keeper {groups['coffee.png'][0]} is gone since it was indexed",
        groups["rocket.jpg"][1]: "changed since it was indexed",
        groups["camera.png"][2]: "gone since it was indexed"}
    assert all(os.path.isfile(p) for p in groups["coffee.png"][1:] + groups["rocket.jpg"][:2])
    assert not os.path.exists(groups["rocket.jpg"][2]) and not os.path.exists(groups["camera.png"][1])
    assert idx.stats()["removed"] == 2
    assert idx.undo(manifest) == (2, 0)
    assert os.path.isfile(groups["rocket.jpg"][2]) and os.path.isfile(groups["camera.png"][1])


def test_the_command_line_names_the_files_it_left_in_place(copies, tmp_path):
    idx, groups = copies
    os.remove(groups["camera.png"][1])
    result = CliRunner().invoke(main, ["duplicates", "--by", "exact", "--index", str(tmp_path / "ix"),
                                       "--move-to", str(tmp_path / "aside")])
    assert result.exit_code == 0 and "moved 5 files from 3 groups" in result.output
    assert f"left 1 file(s) in place:\n  {groups['camera.png'][1]}: gone since it was indexed" in result.output


def test_simsearchs_own_folders_inside_the_collection_are_never_indexed(tmp_path):
    """The index, duplicates moved aside and a report's thumbnails, all inside the folder indexed (as
    `cd photos; simsearch index .` leaves them): indexing it again takes none of their files in, so moved
    duplicates do not come back and thumbnails do not pair with their photos; undo still works."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("rocket.jpg", "coffee.png"):
        shutil.copy(REPO / "samples" / "images" / name, photos / name)
    shutil.copy(photos / "rocket.jpg", photos / "rocket_copy.jpg")
    with simsearch.open_index(photos / ".simsearch", create=True) as idx:
        assert idx.add([photos], workers=1).skipped == 0  # the index's own files are not even looked at
        idx.report_duplicates(photos / "report", by="exact")
        assert list((photos / "report" / "thumbs").iterdir())  # thumbnails a walk would find
        assert idx.move_duplicates(photos / "aside", photos / "aside" / "moves.jsonl", by="exact").moved == 1
        again = idx.add([photos], workers=1)
        assert (again.new, again.skipped, len(idx.images())) == (0, 0, 2)
        assert idx.duplicates(by="exact") == []
        assert idx.undo(photos / "aside" / "moves.jsonl") == (1, 0)
        assert idx.add([photos], workers=1).unchanged == 3


def test_an_interrupted_move_marks_what_it_moved_and_can_be_undone(copies, tmp_path, monkeypatch):
    idx, _ = copies
    real_move, calls = shutil.move, []

    def move_then_stop(src, dst):
        if calls:
            raise KeyboardInterrupt
        calls.append(src)
        return real_move(src, dst)

    monkeypatch.setattr("simsearch.moves.shutil.move", move_then_stop)
    manifest = tmp_path / "moves.jsonl"
    with pytest.raises(KeyboardInterrupt):
        idx.move_duplicates(tmp_path / "aside", manifest, by="exact")
    assert not os.path.exists(calls[0]) and idx.stats()["removed"] == 1
    monkeypatch.undo()
    assert idx.undo(manifest) == (1, 0) and os.path.isfile(calls[0])


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_a_read_only_index_is_queried_without_writing_anything(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    _many_photos(photos, 6)
    shutil.copy(photos / sorted(os.listdir(photos))[0], photos / "copy.jpg")
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([photos], workers=1)
    shutil.rmtree(tmp_path / "ix" / "faiss", ignore_errors=True)  # a writable open would write these back
    before = _snapshot(tmp_path / "ix")
    with simsearch.open_index(tmp_path / "ix", read_only=True) as ro:
        assert ro.stats()["images"] == 7 and len(ro.duplicates(by="exact")) == 1
        assert ro.search(photos / "copy.jpg", by="phash", k=2)[0].distance == 0
        with pytest.raises(simsearch.InvalidArgument, match="read-only"):
            ro.add([photos])
        with pytest.raises(simsearch.InvalidArgument, match="read-only"):
            ro.cluster(2, by="phash")
    assert _snapshot(tmp_path / "ix") == before  # no FAISS file, no -wal or -shm, nothing touched
    # an index this user cannot write opens read-only by itself (root can write anything: pretend)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    result = CliRunner().invoke(main, ["search", str(photos / "copy.jpg"), "--by", "phash", "--index",
                                       str(tmp_path / "ix")])
    assert result.exit_code == 0 and "copy.jpg" in result.output
    refused = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "ix")])
    assert refused.exit_code == 1 and refused.output.startswith("Error: ") and "read-only" in refused.output
    assert _snapshot(tmp_path / "ix") == before


def test_a_symlink_and_its_target_are_one_file(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(REPO / "samples" / "images" / "coffee.png", photos / "zz_real.png")
    os.symlink("zz_real.png", photos / "a_link.png")  # sorts first: the old path tie-break kept it
    outside = tmp_path / "elsewhere.png"
    shutil.copy(REPO / "samples" / "images" / "rocket.jpg", outside)
    os.symlink(outside, photos / "b_outside_link.jpg")
    shutil.copy(outside, photos / "c_rocket_copy.jpg")
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([photos], workers=1)
        paths = {r.path for r in idx.images()}
        assert paths == {"zz_real.png", "b_outside_link.jpg", "c_rocket_copy.jpg"}  # the inner link is not listed
        [group] = idx.duplicates(by="exact")
        assert [r.path for r in group] == ["c_rocket_copy.jpg", "b_outside_link.jpg"]  # the file is kept
        assert idx.move_duplicates(tmp_path / "aside", tmp_path / "moves.jsonl", by="exact") == (1, 1, [])
    assert outside.is_file() and (photos / "c_rocket_copy.jpg").is_file()  # a link moved, never a target
    assert (photos / "a_link.png").resolve() == (photos / "zz_real.png").resolve()


def test_a_second_writer_is_refused_and_a_dead_one_frees_the_index(tmp_path, photos):
    with simsearch.open_index(tmp_path / "ix", create=True) as idx:
        idx.add([photos], workers=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, simsearch\n"
         "idx = simsearch.open_index(sys.argv[1])\n"
         "with idx.writing():\n    print('held', flush=True)\n    time.sleep(60)\n", str(tmp_path / "ix")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "ix")])
        assert refused.exit_code == 1 and f"simsearch process {holder.pid} is writing" in refused.output
        assert len(refused.output.strip().splitlines()) == 1
        reading = CliRunner().invoke(main, ["stats", "--index", str(tmp_path / "ix"), "--format", "json"])
        assert reading.exit_code == 0  # readers are never blocked
        with simsearch.open_index(tmp_path / "ix") as idx, pytest.raises(simsearch.IndexBusy):
            idx.cluster(2, by="phash")
    finally:
        holder.kill()  # a killed writer: the operating system drops its lock
        holder.wait()
    again = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "ix"), "--workers", "1"])
    assert again.exit_code == 0, again.output


@pytest.fixture
def small_disk(tmp_path):
    """A small file system (tmpfs), for a real full disk; skips where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a full-disk test needs to mount a small tmpfs (root, mount allowed)")
    yield mount
    if subprocess.run(["umount", str(mount)]).returncode != 0:  # something still holds it open: detach it anyway
        subprocess.run(["umount", "--lazy", str(mount)], check=True)
        pytest.fail("a file on the small disk was left open")


def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path, small_disk):
    import numpy as np

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for k in range(300):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(photos / f"n{k:03d}.png")
    simsearch.open_index(small_disk / "ix", create=True).close()
    used = shutil.disk_usage(small_disk).used
    subprocess.run(["mount", "-o", f"remount,size={used // 1024 + 96}k", str(small_disk)], check=True)  # 96 KB left
    args = ["index", str(photos), "--workers", "1", "--index"]
    full = CliRunner().invoke(main, [*args, str(small_disk / "ix")])
    assert full.exit_code == 1 and full.output.startswith("Error: the disk is full writing the index")
    assert len(full.output.strip().splitlines()) == 1
    # queries still answer on a full disk: the FAISS index they cannot keep is built in memory
    query = CliRunner().invoke(main, ["search", str(photos / "n000.png"), "--by", "phash", "-k", "1", "--index",
                                      str(small_disk / "ix")])
    assert query.exit_code == 0, query.output
    assert not list(small_disk.rglob("*.tmp"))
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed
    resumed = CliRunner().invoke(main, [*args, str(small_disk / "ix")])
    assert resumed.exit_code == 0, resumed.output
    assert CliRunner().invoke(main, [*args, str(tmp_path / "reference")]).exit_code == 0
    with simsearch.open_index(small_disk / "ix") as ix, simsearch.open_index(tmp_path / "reference") as ref:
        assert ix.stats()["images"] == 300
        assert {(r.path, r.sha256) for r in ix.images()} == {(r.path, r.sha256) for r in ref.images()}
        assert ix.hash_codes("phash")[1].tolist() == ref.hash_codes("phash")[1].tolist()
    assert not list(small_disk.rglob("*.tmp"))


@pytest.mark.parametrize("args", [["--embed"], ["--tag", "imagenet"]], ids=["embed", "tag"])
def test_models_without_the_embed_extra_name_it_in_one_line(tmp_path, monkeypatch, args):
    import simsearch.runtime

    real = simsearch.runtime.installed
    monkeypatch.setattr(simsearch.runtime, "installed", lambda m: m not in ("timm", "torch") and real(m))
    result = CliRunner().invoke(main, ["index", str(REPO / "samples" / "images"), "--index", str(tmp_path / "ix"),
                                       "--workers", "1", *args])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "needs the embed extra (missing: " in result.output and "pip install 'simsearch[embed]'" in result.output


def concurrent_new_index(folder, index, db=None) -> list[subprocess.CompletedProcess]:
    """Two ``simsearch index`` runs started at once on one new index."""
    cmd = [sys.executable, "-m", "simsearch.cli", "index", str(folder), "--index", str(index), "--workers", "1"]
    cmd += ["--db", db] if db else []
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    out = [r.communicate() for r in runs]
    return [subprocess.CompletedProcess(r.args, r.returncode, *o) for r, o in zip(runs, out)]


def check_concurrent_runs(runs, index, db=None) -> None:
    for run in runs:  # each finished, or was refused in one line: no traceback, no half-made index
        assert run.returncode == 0 or (run.returncode == 1 and run.stderr.count("\n") == 1
                                       and "is writing the index" in run.stderr), run.stderr
    assert any(run.returncode == 0 for run in runs)
    with simsearch.open_index(index, db=db) as idx:
        assert idx.stats()["images"] == len(list((REPO / "samples" / "images").iterdir()))


@pytest.mark.parametrize("attempt", range(3))
def test_two_runs_creating_one_index_at_once(tmp_path, attempt):
    runs = concurrent_new_index(REPO / "samples" / "images", tmp_path / "ix")
    check_concurrent_runs(runs, tmp_path / "ix")
