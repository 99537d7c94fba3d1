"""The book as its readers meet it.

One render build (execution off: nbval executes the notebooks in this test session, and
these tests run after them, so the instructor's guide shows the times they recorded)
serves every check: the build itself with warnings as errors, then headless Chromium
(scripts/book_site.py) on every page of the table of contents with the network off,
the search page, three screenshots and the printed PDF (kept in _build/site-check/).

``GENREC_BOOK_HTML=_build/html`` points the browser checks at an existing build (the
executed one that ``scripts/build_book.sh`` makes) instead of building. Without Chromium
the browser checks skip with one line, unless ``GENREC_REQUIRE_BROWSER=1`` (CI) makes a
missing browser a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import book_site  # noqa: E402
from genrec_book import chapter_pages, chapter_times, toc_pages  # noqa: E402  (book/_ext, put on the path by book_site)

ARTEFACTS = ROOT / "_build" / "site-check"

# After the notebooks, like the results checks (see the root conftest.py).
pytestmark = pytest.mark.results


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    """(html folder, build result or None): the render build, made once for this module."""
    given = os.environ.get("GENREC_BOOK_HTML")
    if given:
        return Path(given).resolve(), None
    tmp = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # Without execution no cell has run, so a {glue} role finds no data: that is expected
    # here (the executed build of scripts/build_book.sh reports a missing key as usual).
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["suppress_warnings"] = [*sphinx_config.get("suppress_warnings", []), "mystnb.glue"]
    # Paths in an override config are read relative to the override's folder.
    extensions = config.get("sphinx", {}).get("local_extensions", {})
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path) for name, path in extensions.items()}
    override = tmp / "_config_render.yml"
    override.write_text(yaml.safe_dump(config))
    out = tmp / "out"
    result = subprocess.run(
        [shutil.which("jupyter-book") or "jupyter-book", "build", str(ROOT), "--config", str(override),
         "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True,
    )
    return out / "_build" / "html", result


def test_book_renders_without_warnings(render):
    html, result = render
    if result is None:
        pytest.skip("GENREC_BOOK_HTML given: checking an existing build, not building")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (html / "index.html").is_file()
    for page in toc_pages(ROOT):
        assert (html / f"{page}.html").is_file(), page
    bibliography = (html / "book" / "bibliography.html").read_text()
    assert "Recommendation with Generative Models" in bibliography
    # MathJax is served by the book itself, not a CDN.
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in chapter_pages(ROOT):
        assert "cdn.jsdelivr.net/npm/mathjax" not in (html / f"{page}.html").read_text(), page


def test_instructor_guide_reads_every_chapter_time(render):
    html, _ = render
    guide = (html / "book" / "instructor_guide.html").read_text()
    text = re.sub(r"<[^>]+>", " ", guide)
    for row in chapter_times(ROOT):
        name = Path(row["page"]).name
        assert f"{name}.html" in guide, f"the guide's table misses {row['page']}"
        if row["seconds"] is not None:
            assert f"({row['seconds']:.0f} s)" in text, f"{row['page']}: recorded time not shown"
        elif not row["exists"]:
            assert "no results file" in text


@pytest.fixture(scope="module")
def site(render):
    html, result = render
    if result is not None and result.returncode != 0:
        pytest.skip("the book did not build (see test_book_renders_without_warnings)")
    if book_site.find_browser() is None:
        message = f"headless Chromium not installed ({book_site.INSTALL_HINT}): browser checks of the book skipped"
        if os.environ.get("GENREC_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with book_site.serve(html) as base_url, book_site.browser() as driver:
        yield html, base_url, driver


@pytest.fixture(scope="module")
def pages(site):
    html, base_url, driver = site
    # Each page is printed while it is loaded, for test_printed_book_has_every_chapter.
    return {page: book_site.inspect_page(driver, base_url, html, page, pdf=True) for page in toc_pages(ROOT)}


def test_every_page_reads_as_in_a_browser(pages):
    """Loads, equations typeset, images loaded, no console error, no stderr block, no
    machine path, no request off this machine, every internal link and anchor resolves."""
    problems = [f"{page}: {problem}" for page, report in pages.items() for problem in report.problems]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:40])
    assert sum(report.n_math for report in pages.values()) > 0, "no equation found in the whole book"
    for page, report in pages.items():
        assert report.h1, f"{page} has no title"


def test_chapters_offer_their_notebook_for_download(pages):
    for page in chapter_pages(ROOT):
        links = pages[page].ipynb
        assert any(link.endswith(f"{Path(page).name}.ipynb") for link in links), f"{page}: no .ipynb download"


def test_search_finds_models_by_their_papers_names(site, pages):
    from genrec_lib.models import MODELS

    _, base_url, driver = site
    chapters = chapter_pages(ROOT)
    checked = 0
    for name in sorted({cls.__name__ for cls in MODELS.values()}):
        word = re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE)
        expected = {page for page in chapters if word.search(pages[page].prose)}
        if not expected:
            continue
        found = set(book_site.search(driver, base_url, name))
        assert found & expected, f"searching {name!r} found {sorted(found)}, none of {sorted(expected)}"
        checked += 1
        if checked == 2:
            break
    assert checked, "no registered model is named in any chapter's text"
    assert book_site.search(driver, base_url, "zzzqqqxx-not-a-word") == []


def test_screenshots_of_three_pages(site, pages):
    """The first page, the page with the most equations and the one with the most figures."""
    _, base_url, driver = site
    order = list(pages)
    by_math = max(order, key=lambda p: pages[p].n_math)
    by_figures = max((p for p in order if p not in (order[0], by_math)), key=lambda p: pages[p].n_figures)
    shots = (("first", order[0], None), ("equations", by_math, "div.math"), ("figures", by_figures, ".cell_output img, figure img"))
    for label, page, scroll_to in shots:
        path = book_site.screenshot(driver, base_url, page, ARTEFACTS / f"{label}-{page.replace('/', '-')}.png", scroll_to)
        assert path.stat().st_size > 10_000, f"{path} is suspiciously small"


def test_printed_book_has_every_chapter(pages):
    from pypdf import PdfReader

    order = list(pages)
    pdf = book_site.join_pdf([(pages[p].h1, pages[p].pdf) for p in order], ARTEFACTS / "book.pdf")
    reader = PdfReader(pdf)
    outline = [(item.title, reader.get_destination_page_number(item)) for item in reader.outline]
    assert len(outline) == len(order), "one outline entry per page of the table of contents"
    def squash(text):  # letters and digits only; NFKC undoes printed ligatures (ff, fi)
        return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", text).lower())

    for (title, start), page in zip(outline, order):
        first = squash(reader.pages[start].extract_text())
        assert squash(pages[page].h1)[:40] in first, f"{page}: its title is not on its first printed page"
    assert len(reader.pages) >= len(order)
