"""A seeded mutation corpus over every format Pillow and pillow-heif write, through the real decode
step and a real ``index`` run: nothing crashes, every good file is indexed, every other one is
either indexed or recorded as a failure. ``make fuzz`` runs a larger corpus (``benchmarks/fuzz.py``)."""

import pytest
from click.testing import CliRunner
from fuzz_corpus import FORMATS, make_corpus

import simsearch
from simsearch.cli import main
from simsearch.errors import ImageError
from simsearch.imageio import decode


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "corpus"
    return folder, make_corpus(folder, per_format=36, seed=7)


def test_decode_fails_only_with_image_errors(corpus):
    _, made = corpus
    assert len(made["good"]) >= len(FORMATS) - 2  # a build may lack one of AVIF and HEIF
    for path in made["good"]:
        decode(path.read_bytes())
    failed = 0
    for path in made["mutant"]:
        try:
            decode(path.read_bytes())
        except ImageError:
            failed += 1  # anything else a codec raises would fail the test here
    assert 0 < failed < len(made["mutant"])  # the mutations damage many files, not all


def test_index_run_over_the_corpus_loses_nothing(corpus, tmp_path):
    folder, made = corpus
    result = CliRunner().invoke(main, ["index", str(folder), "--index", str(tmp_path / "ix"), "--workers", "2",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    with simsearch.open_index(tmp_path / "ix") as idx:
        indexed = {r.path for r in idx.images()}
        failed = {f["path"] for f in idx.failures()}
    assert {p.name for p in made["good"]} <= indexed
    assert indexed | failed == {p.name for p in made["good"] + made["mutant"]} and not indexed & failed
