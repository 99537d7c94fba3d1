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


def _notebook():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    hidden = {"tags": ["hide-cell"]}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell("setup = 1", metadata=hidden),  # hidden, but not a solution
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. Do it."),
        nbformat.v4.new_code_cell("print('starter code')"),
        nbformat.v4.new_code_cell("answer = 42", metadata=hidden),
    ]
    return nb


def test_student_downloads_lose_only_the_solutions(tmp_path):
    import jupytext

    sources = tmp_path / "_sources" / "notebooks"
    sources.mkdir(parents=True)
    jupytext.write(_notebook(), sources / "99_x.ipynb")
    jupytext.write(_notebook(), sources / "99_x.md", fmt="md:myst")
    (tmp_path / "_sources" / "prose.md").write_text("# Prose\n\n## Exercises\n")
    changed = book_site.strip_solutions(tmp_path)
    assert sorted(p.name for p in changed) == ["99_x.ipynb", "99_x.md"]
    for path, fmt in ((sources / "99_x.ipynb", "ipynb"), (sources / "99_x.md", "md:myst")):
        code = [c.source for c in jupytext.read(path, fmt=fmt).cells if c.cell_type == "code"]
        assert code == ["setup = 1", "print('starter code')"], path


def test_student_pages_lose_only_the_solutions(monkeypatch):
    from docutils import nodes
    from docutils.utils import new_document
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from genrec_book import _remove_solutions

    def page():
        doc = new_document("x", get_default_settings(Parser))
        for title in ("Training", "Exercises"):
            section = nodes.section("", nodes.title(text=title))
            section += nodes.container("", nodes.literal_block(text=f"{title} solution"), classes=["cell", "tag_hide-cell"])
            section += nodes.container("", nodes.literal_block(text=f"{title} code"), classes=["cell"])
            doc += section
        return doc

    monkeypatch.delenv("GENREC_STUDENT", raising=False)
    full = page()
    _remove_solutions(None, full)
    assert "Exercises solution" in full.astext()
    monkeypatch.setenv("GENREC_STUDENT", "1")
    student = page()
    _remove_solutions(None, student)
    text = student.astext()
    assert "Exercises solution" not in text
    assert "Training solution" in text and "Exercises code" in text
