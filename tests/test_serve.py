"""``simsearch serve``: a real server process on a free loopback port, driven through HTTP and through
headless Chromium (Playwright, with the Debian package's browser). Screenshots of each page go to
test-output/screenshots/."""

import io
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from PIL import Image

from simsearch.cli import main

from .conftest import REPO

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("onnxruntime", reason="the embed extra is not installed")

TOKEN = "test-token"
SHOTS = REPO / "test-output" / "screenshots"


def _cli(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, photos folder, index folder): the samples, their edits and one exact copy, indexed with
    embeddings and ImageNet tags, clustered, and served by a real `simsearch serve` process."""
    from make_variants import make_variants

    base = tmp_path_factory.mktemp("serve")
    photos = base / "photos"
    shutil.copytree(REPO / "samples" / "images", photos)
    make_variants(photos)
    shutil.copy(photos / "coffee.png", photos / "coffee_copy.png")
    index = base / "ix"
    _cli("index", photos, "--index", index, "--embed", "--tag", "imagenet", "--min-score", "0.2", "--workers", "1")
    _cli("cluster", "--index", index, "--k", "4", "--name", "four")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "simsearch.cli", "serve", "--index", str(index), "--port",
                               str(port), "--token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/api/stats", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
        assert server.poll() is None, server.stdout.read()
    yield url, photos, index
    server.terminate()
    server.wait(10)


def _groups(csv_text: str) -> list[list[dict]]:
    import csv

    groups: dict[str, list] = {}
    for row in csv.DictReader(io.StringIO(csv_text)):
        groups.setdefault(row["group"], []).append(row)
    return list(groups.values())


def _search(url, *paths, **form):
    files = [("image", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    return httpx.post(url + "/api/search", files=files, data=form, timeout=60)


def test_a_port_in_use_is_one_line_before_anything_is_announced(served):
    _, _, index = served
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "simsearch.cli", "serve", "--index", str(index), "--port",
                                 str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "serving" not in result.stdout
    assert result.stderr.strip() == (f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; another "
                                     "server is using it: choose another --port")


def test_search_api_answers_as_the_cli_does(served):
    url, photos, index = served
    reply = _search(url, photos / "chelsea.png", photos / "rocket.jpg", k="4")
    assert reply.status_code == 200
    body = reply.json()
    assert body["by"] == "embedding" and [r["query"] for r in body["results"]] == ["chelsea.png", "rocket.jpg"]
    cli = json.loads(_cli("search", photos / "chelsea.png", photos / "rocket.jpg", "--index", index, "-k", "4",
                          "--format", "json"))
    assert [[(m["image"]["path"], m["score"]) for m in r["matches"]] for r in body["results"]] == \
           [[(m["path"], m["similarity"]) for m in block["matches"]] for block in cli]
    top = body["results"][0]["matches"][0]
    assert "chelsea" in top["image"]["path"] and top["score"] > 0.99  # the photo or one of its exact copies
    hashes = _search(url, photos / "coffee.png", by="phash", k="2").json()
    assert hashes["by"] == "phash" and hashes["results"][0]["matches"][0]["score"] == 0
    near = _search(url, photos / "coffee.png", by="phash", k="40", max_distance="4").json()["results"][0]["matches"]
    cli = json.loads(_cli("search", photos / "coffee.png", "--index", index, "--by", "phash", "-k", "40",
                          "--max-distance", "4", "--format", "json"))
    assert [(m["image"]["path"], m["score"]) for m in near] == [(m["path"], m["distance"]) for m in cli]
    assert _search(url, photos / "coffee.png", by="phash", max_distance="64").status_code == 422


def test_match_api_answers_as_the_cli_does(served, tmp_path):
    url, photos, index = served
    turned = Image.open(photos / "chelsea.png").convert("RGB").rotate(4, expand=True, fillcolor=(255, 255, 255))
    query = tmp_path / "listing.jpg"
    turned.save(query, quality=70)
    files = [("image", (p.name, p.read_bytes(), "application/octet-stream")) for p in (query, query)]
    files.append(("image", ("junk.jpg", b"not an image", "application/octet-stream")))
    body = httpx.post(url + "/api/match", files=files, timeout=60).json()
    cli = json.loads(_cli("match", query, "--index", index, "--format", "json"))
    first, again, junk = body["results"]
    assert body["level"] == "copy" and first["query"] == "listing.jpg" and first == again
    assert [(d["image"]["path"], d["score"]) for d in first["duplicates"]] == [(p["a"], p["score"]) for p in cli]
    assert cli and all("chelsea" in p["a"] for p in cli) and "error" in junk
    assert httpx.post(url + "/api/match", files=files[:1], data={"level": "nope"}).status_code == 422


def test_listings_match_the_cli(served):
    url, _, index = served
    assert httpx.get(url + "/api/stats").json() == json.loads(_cli("stats", "--index", index, "--format", "json"))
    assert httpx.get(url + "/api/tags").json() == json.loads(_cli("tags", "--index", index, "--format", "json"))
    page = httpx.get(url + "/api/duplicates", params={"per_page": 500}).json()
    cli = json.loads(_cli("duplicates", "--index", index, "--explain", "--format", "json"))
    assert page["total"] == len(cli) > 0
    assert [(g["keeper"]["path"], [(m["image"]["path"], m["score"]) for m in g["members"]]) for g in page["groups"]] \
        == [(g["keep"], [(p["b"], p["score"]) for p in g["pairs"]]) for g in cli]
    by_hash = httpx.get(url + "/api/duplicates", params={"by": "dhash", "max_distance": 6, "per_page": 500}).json()
    cli_hash = [[r["path"] for r in rows] for rows in _groups(_cli("duplicates", "--index", index, "--by", "dhash",
                                                                    "--max-distance", "6", "--format", "csv"))]
    assert [[g["keeper"]["path"]] + [m["image"]["path"] for m in g["members"]] for g in by_hash["groups"]] == cli_hash
    paged = httpx.get(url + "/api/duplicates", params={"per_page": 2, "page": 2}).json()
    assert paged["groups"] == page["groups"][2:4] and paged["pages"] == -(-page["total"] // 2)
    [run] = httpx.get(url + "/api/clusters").json()
    clusters = httpx.get(url + "/api/clusters/four").json()
    images = json.loads(_cli("stats", "--index", index, "--format", "json"))["images"]
    assert run["name"] == "four" and sum(c["size"] for c in clusters) == images
    assert json.loads(httpx.get(url + "/openapi.json").text)["paths"]["/api/search"]["post"]


def test_images_thumbnails_and_no_file_outside_the_roots(served):
    url, photos, index = served
    image = httpx.get(url + "/api/images/1").json()
    assert (photos / image["path"]).exists() and "detections" in image
    thumb = httpx.get(url + "/api/images/1/thumbnail")
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    assert list((index / "thumbnails").rglob("*.jpg"))  # cached
    assert httpx.get(url + "/api/images/1/file").content == (photos / image["path"]).read_bytes()
    for path in ("/api/images/999999/file", "/api/images/..%2F..%2Fetc%2Fpasswd/file", "/api/images/../../etc/passwd",
                 "/../../etc/passwd", "/api/images/1/..%2F..%2F..%2Fetc%2Fpasswd"):
        assert httpx.get(url + path).status_code == 404, path


def test_uploads_are_limited_and_decoded_safely(served, tmp_path):
    url, _, _ = served
    big = httpx.post(url + "/api/search", files=[("image", ("big.bin", b"\0" * (33 * 2**20)))])
    assert big.status_code == 413
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 400 megapixels in a few kB
    reply = httpx.post(url + "/api/search", files=[("image", ("bomb.png", bomb.getvalue()))], timeout=60).json()
    assert "limit" in reply["results"][0]["error"]  # refused as a decompression bomb, never decoded
    junk = httpx.post(url + "/api/search", files=[("image", ("junk.jpg", b"not an image"))]).json()
    assert "not a recognised image" in junk["results"][0]["error"]
    assert httpx.post(url + "/api/search", data={"by": "nope"},
                      files=[("image", ("x.png", b"x"))]).status_code == 400


def test_moves_need_the_token_and_undo_puts_files_back(served):
    url, photos, _ = served
    group = next(g for g in httpx.get(url + "/api/duplicates", params={"per_page": 500}).json()["groups"]
                 if g["keeper"]["path"].startswith("coffee"))
    keeper, others = group["keeper"], [m["image"] for m in group["members"]]
    body = {"keeper": keeper["id"], "move": [o["id"] for o in others]}
    assert httpx.post(url + "/api/moves", json=body).status_code == 403
    assert httpx.post(url + "/api/moves", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    done = httpx.post(url + "/api/moves", json=body, headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert done["moved"] == len(others) and done["skipped"] == []
    assert all(not (photos / o["path"]).exists() for o in others)
    assert (photos / keeper["path"]).exists()
    back = httpx.post(url + "/api/undo", json={"manifest": done["manifest"]},
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert back["moved_back"] == len(others) and all((photos / o["path"]).exists() for o in others)
    assert httpx.post(url + "/api/undo", json={"manifest": "../../etc/passwd"},
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_indexing_in_another_process_shows_up_without_a_restart(served):
    url, photos, index = served
    new = photos / "later" / "brick_small.jpg"
    new.parent.mkdir()
    Image.open(photos / "brick.png").convert("RGB").resize((200, 200)).save(new, quality=90)
    before = httpx.get(url + "/api/stats").json()["images"]
    upload = [("image", (new.name, new.read_bytes(), "application/octet-stream"))]
    matched = httpx.post(url + "/api/match", files=upload, timeout=60).json()["results"][0]["duplicates"]
    assert "later/brick_small.jpg" not in {d["image"]["path"] for d in matched}
    _cli("index", photos, "--index", index, "--embed", "--tag", "imagenet", "--min-score", "0.2", "--workers", "1")
    assert httpx.get(url + "/api/stats").json()["images"] == before + 1
    found = _search(url, new, k="3").json()["results"][0]["matches"]
    assert found[0]["image"]["path"] == "later/brick_small.jpg" and found[0]["score"] > 0.99
    # matching reads the index again once it changed: the upload's own bytes are indexed now
    matched = httpx.post(url + "/api/match", files=upload, timeout=60).json()["results"][0]["duplicates"]
    assert matched[0]["image"]["path"] == "later/brick_small.jpg" and matched[0]["reason"] == "same bytes or pixels"


# -- in a real browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_browser_search_by_upload_shows_the_top_match(served, browser):
    url, photos, _ = served
    page = browser.new_page()
    page.goto(url + "/")
    page.set_input_files("#image", str(photos / "rocket.jpg"))
    first = page.locator("#results figure figcaption").first
    first.wait_for()
    assert "rocket" in first.inner_text().split(" ")[0]
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=SHOTS / "search.png", full_page=True)


def test_browser_duplicates_show_scores_and_move_aside_then_undo(served, browser):
    url, photos, _ = served
    page = browser.new_page()
    page.goto(url + f"/duplicates?token={TOKEN}")
    group = page.locator("section[data-group]").filter(has_text="coffee_copy.png").first
    captions = group.locator("figcaption").all_inner_texts()
    assert any("p=" in c for c in captions)  # each member's score and reason
    page.screenshot(path=SHOTS / "duplicates.png", full_page=True)
    paths = group.locator("img").evaluate_all("images => images.map(i => i.alt)")
    group.locator("input[type=radio]").nth(1).check()  # keep the second image instead
    kept = paths[1]
    group.locator("button.move").click()
    group.locator(".status.done").wait_for()
    assert (photos / kept).exists() and not any((photos / p).exists() for p in paths if p != kept)
    page.screenshot(path=SHOTS / "duplicates-moved.png", full_page=True)
    group.locator("button.undo").click()
    page.wait_for_function("document.querySelector('.status.done').textContent.includes('back')")
    assert all((photos / p).exists() for p in paths)


def test_browser_pages_read_without_javascript_and_clusters_show_medoids(served, browser):
    url, _, _ = served
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(url + "/duplicates")
    assert page.locator("section[data-group]").count() > 0 and "p=" in page.content()
    page.goto(url + "/clusters/four")
    assert page.locator("section").count() == 4 and page.locator("figure.keep").count() == 4  # a medoid each
    page.screenshot(path=SHOTS / "clusters.png", full_page=True)
    response = page.goto(url + "/api/images/..%2F..%2Fetc%2Fpasswd/file")
    assert response.status == 404
    context.close()
