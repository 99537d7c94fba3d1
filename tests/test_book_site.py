"""The browser check (scripts/book_site.py) fails on each fault a reader would meet, and
passes a clean page: checked on a tiny hand-made site, so it needs no book build."""

import base64
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import book_site  # noqa: E402

# A 1x1 PNG.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

GOOD = """<!DOCTYPE html><html><head><title>Good</title></head><body><article>
<h1 id="top">A clean page</h1><p>Text with a <a href="bad.html#faults">link</a> and
<a href="#top">an anchor</a>.</p><img src="pixel.png" alt="a pixel"></article></body></html>"""

BAD = """<!DOCTYPE html><html><head><title>Bad</title>
<script src="https://cdn.example.org/mathjax.js"></script></head><body><article>
<h1 id="faults">Every fault</h1><p>Inline maths left raw: <span class="math">\\(x_u\\)</span></p>
<img src="missing.png" alt="gone"><div class="output stderr"><pre>TqdmWarning: IProgress not found</pre></div>
<p>Built in {root}</p><a href="nowhere.html">broken</a> <a href="good.html#no-such-anchor">anchor</a>
<script>undefined_function();</script></article></body></html>"""


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    if book_site.find_browser() is None:
        message = f"headless Chromium not installed ({book_site.INSTALL_HINT}): browser checks skipped"
        if os.environ.get("GENREC_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    html = tmp_path_factory.mktemp("site")
    (html / "good.html").write_text(GOOD)
    (html / "bad.html").write_text(BAD.format(root=ROOT))
    (html / "pixel.png").write_bytes(PIXEL)
    with book_site.serve(html) as base_url, book_site.browser() as driver:
        yield html, base_url, driver


def test_clean_page_passes(tiny_site):
    html, base_url, driver = tiny_site
    report = book_site.inspect_page(driver, base_url, html, "good")
    assert report.problems == []
    assert report.h1 == "A clean page" and report.n_images == 1


def test_every_fault_is_reported(tiny_site):
    html, base_url, driver = tiny_site
    problems = "\n".join(book_site.inspect_page(driver, base_url, html, "bad").problems)
    for expected in ("equation not typeset", "raw LaTeX", "image did not load", "stderr/traceback block",
                     "the builder's path", "resource from the network", "console error",
                     "broken internal link", "missing anchor"):
        assert expected in problems, f"not reported: {expected}\n{problems}"
