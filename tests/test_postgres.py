"""The index on a real PostgreSQL server (started by the ``postgres`` fixture on 127.0.0.1): the
same results as SQLite, one writer at a time through an advisory lock, read-only opening."""

import subprocess
import sys

import pytest

import simsearch


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory, photos_module):
    idx = simsearch.open_index(tmp_path_factory.mktemp("sqlite") / "ix", create=True)
    idx.add([photos_module], workers=2)
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def photos_module(tmp_path_factory):
    import shutil

    from make_variants import make_variants

    from .conftest import REPO

    folder = tmp_path_factory.mktemp("pg-photos") / "photos"
    shutil.copytree(REPO / "samples" / "images", folder)
    make_variants(folder)
    return folder


def _summary(idx) -> tuple:
    records = sorted((r.path, r.sha256, r.width, r.height) for r in idx.images())
    groups = sorted(sorted(r.path for r in g) for g in idx.duplicates(by="phash"))
    exact = sorted(sorted(r.path for r in g) for g in idx.duplicates(by="exact"))
    return records, groups, exact, idx.hash_codes("dhash")[1].tolist()


def test_postgres_index_gives_the_sqlite_results(postgres, tmp_path, photos_module, sqlite_reference):
    url = postgres()
    with simsearch.open_index(tmp_path / "pg", db=url, create=True) as idx:
        idx.add([photos_module], workers=2)
        assert _summary(idx) == _summary(sqlite_reference)
        query = photos_module / "chelsea.png"
        assert [(m.image.path, m.distance) for m in idx.search(query, by="phash", k=5)] == \
               [(m.image.path, m.distance) for m in sqlite_reference.search(query, by="phash", k=5)]
        again = idx.add([photos_module], workers=1)  # a second run finds everything unchanged
        assert again.indexed == 0 and again.unchanged == len(idx.images())


def test_postgres_has_one_writer_at_a_time(postgres, tmp_path, photos_module):
    url = postgres()
    with simsearch.open_index(tmp_path / "pg", db=url, create=True) as idx:
        idx.add([photos_module], workers=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, simsearch\n"
         "idx = simsearch.open_index(sys.argv[1], db=sys.argv[2])\n"
         "with idx.writing():\n    print('held', flush=True)\n    time.sleep(60)\n", str(tmp_path / "pg"), url],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with simsearch.open_index(tmp_path / "pg", db=url) as idx:
            assert idx.stats()["images"] > 0  # reading is not blocked
            with pytest.raises(simsearch.IndexBusy, match="another simsearch process is writing"):
                idx.add([photos_module], workers=1)
    finally:
        holder.kill()
        holder.wait()
    with simsearch.open_index(tmp_path / "pg", db=url) as idx:  # the dead holder's session took its lock along
        assert idx.add([photos_module], workers=1).indexed == 0


def test_postgres_read_only(postgres, tmp_path, photos_module):
    url = postgres()
    with simsearch.open_index(tmp_path / "pg", db=url, create=True) as idx:
        idx.add([photos_module], workers=1)
        count = idx.stats()["images"]
    with simsearch.open_index(tmp_path / "pg", db=url, read_only=True) as ro:
        assert ro.stats()["images"] == count and ro.duplicates(by="exact")
        with pytest.raises(simsearch.InvalidArgument, match="read-only"):
            ro.add([photos_module])


def test_simsearch_db_environment_and_an_index_folder_of_faiss_files(postgres, tmp_path, photos_module, monkeypatch):
    from click.testing import CliRunner

    from simsearch.cli import main

    monkeypatch.setenv("SIMSEARCH_DB", postgres())  # no password or URL on the command line
    made = CliRunner().invoke(main, ["index", str(photos_module), "--index", str(tmp_path / "a"), "--workers", "1"])
    assert made.exit_code == 0, made.output
    assert not (tmp_path / "a" / "simsearch.db").exists()  # the metadata went to PostgreSQL
    found = CliRunner().invoke(main, ["search", str(photos_module / "chelsea.png"), "--by", "phash", "-k", "1",
                                      "--index", str(tmp_path / "b")])  # another folder: only FAISS files go there
    assert found.exit_code == 0 and "chelsea.png" in found.output, found.output
    assert {p.parent.name for p in (tmp_path / "b").rglob("*.index")} == {"faiss"}


@pytest.mark.parametrize("attempt", range(3))
def test_two_runs_creating_one_postgres_index_at_once(postgres, tmp_path, attempt):
    from .conftest import REPO
    from .test_hardening import check_concurrent_runs, concurrent_new_index

    url = postgres()
    runs = concurrent_new_index(REPO / "samples" / "images", tmp_path / "ix", db=url)
    check_concurrent_runs(runs, tmp_path / "ix", db=url)


def test_postgres_clusters_and_tags(postgres, tmp_path, photos_module, sqlite_reference):
    url = postgres()
    with simsearch.open_index(tmp_path / "pg", db=url, create=True) as idx:
        idx.add([photos_module], workers=1)
        run = idx.cluster(3, by="phash", name="three")
        theirs = sqlite_reference.cluster(3, by="phash", name=f"three-{tmp_path.name}")
        assert run["k"] == 3 and run["images"] == theirs["images"] and run["loss"] == pytest.approx(theirs["loss"])
        assert sorted(c["size"] for c in idx.clusters("three")) == \
               sorted(c["size"] for c in sqlite_reference.clusters(theirs["name"]))
        pytest.importorskip("onnxruntime", reason="the embed extra is not installed")
        assert idx.tag("imagenet", min_score=0.2, workers=1) == len(idx.images())
        assert idx.tags() and idx.with_tags([idx.tags()[0]["label"]], min_score=0.2)
