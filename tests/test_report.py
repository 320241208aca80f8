"""HTML reports of clusters and duplicate groups: every thumbnail exists and decodes,
rows and order are right, and an unreadable file gets a placeholder, not a broken image."""

import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

import simsearch

pytest.importorskip("onnxruntime")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.sections, self.missing = [], 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "section":
            self.sections += 1
        elif tag == "div" and attrs.get("class") == "missing":
            self.missing += 1


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture
def embedded(photos, tmp_path):
    idx = simsearch.open_index(tmp_path / "ix", create=True)
    idx.add([photos], workers=1, embed="efficientnet_lite0")
    yield idx
    idx.close()


def test_cluster_report_shows_every_member_medoid_first(embedded, tmp_path):
    embedded.cluster(4, name="four")
    page_path = embedded.report_clusters("four", tmp_path / "report")
    page = _parse(page_path)
    assert page.sections == 4 and len(page.images) == 29 and page.missing == 0
    for src in page.images:
        with Image.open(page_path.parent / src) as thumb:
            thumb.load()
            assert max(thumb.size) <= 160
    first = embedded.cluster_members("four", 1)[0]
    assert first.medoid and page.images[0] == f"thumbs/{first.image.id}.jpg"


def test_duplicate_report_marks_unreadable_files(embedded, photos, tmp_path):
    groups = embedded.duplicates()
    (photos / "edits" / "coffee_q70.jpg").unlink()
    page = _parse(embedded.report_duplicates(tmp_path / "dups"))
    assert page.sections == len(groups) and page.missing == 1
    assert len(page.images) + page.missing == sum(len(g) for g in groups)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(embedded, tmp_path):
    embedded.cluster(3, name="three")
    page = embedded.report_clusters("three", tmp_path / "report")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-images-ok="29"' in dom and 'data-images-broken="0"' in dom
