"""The built book as a reader's browser shows it: page checks, screenshots and a PDF.

Debian's headless Chromium (packages ``chromium`` and ``chromium-driver``), driven through
Selenium, loads every page of the table of contents from a local HTTP server. Every host
other than 127.0.0.1 is unresolvable inside the browser, so a page that needs the network
(a CDN script, a web font) fails the check exactly as it would for an offline reader.

Used by ``tests/test_book.py`` (on the render build the tests make) and by
``scripts/build_book.sh`` (on the executed build, which also gets ``_build/pdf/book.pdf``)::

    python scripts/book_site.py check _build/html      # every page, printed as a report
    python scripts/book_site.py check _build/html --pdf _build/pdf/book.pdf   # and print it
    python scripts/book_site.py pdf _build/html _build/pdf/book.pdf
    python scripts/book_site.py strip-solutions _build/student/_build/html
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import html.parser
import http.server
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from genrec_book import toc_pages  # noqa: E402  (the book's own reading of _toc.yml)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "apt-get install chromium chromium-driver"
# Text that must never reach a rendered page: where this checkout and this Python live.
MACHINE_PATHS = tuple(p for p in {str(ROOT), sys.prefix, str(Path.home())} if len(p) > 1)


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, or None when either is missing."""
    chromium = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


class _IdCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    collector = _IdCollector()
    collector.feed(path.read_text(errors="replace"))
    return frozenset(collector.ids)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@contextlib.contextmanager
def serve(html_dir: Path):
    """Serve ``html_dir`` on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def browser(width: int = 1280, height: int = 1000):
    """A headless Chromium (Selenium) that can reach 127.0.0.1 and nothing else."""
    found = find_browser()
    if found is None:
        raise RuntimeError(f"headless Chromium or chromedriver not found: install them with `{INSTALL_HINT}`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="genrec-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Runs in the page: wait for MathJax and every image, then report what a reader sees.
_INSPECT_JS = r"""
const done = arguments[arguments.length - 1];
(async () => {
  for (const img of document.images) { img.loading = "eager"; }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  const article = document.querySelector("article") || document.body;
  const maths = [...article.querySelectorAll(".math")];
  const clone = article.cloneNode(true);
  clone.querySelectorAll("pre, code, script, style, mjx-container, textarea").forEach(e => e.remove());
  const text = clone.textContent;  // the prose: what a reader reads outside code
  const outputs = [...article.querySelectorAll(".cell_output, .output")].map(e => e.textContent).join("\n");
  done({
    title: document.title,
    n_math: maths.length,
    untypeset: maths.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.slice(0, 80)),
    math_errors: [...article.querySelectorAll("mjx-merror")].map(e => e.textContent.slice(0, 80)),
    raw_tex: [...text.matchAll(/\\[(\[]/g)].map(m => text.slice(Math.max(0, m.index - 30), m.index + 50)),
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    n_figures: article.querySelectorAll("figure, .cell_output img").length,
    stderr: [...article.querySelectorAll(".output.stderr, .stderr, .output.traceback, .traceback")].map(e => e.textContent.slice(0, 300)),
    outputs: outputs,
    text: article.textContent,
    prose: text,
    h1: (article.querySelector("h1") || {textContent: ""}).textContent.replace(/#$/, "").trim(),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    ipynb: [...document.querySelectorAll("a[href$='.ipynb']")].map(a => a.href),
    resources: performance.getEntriesByType("resource").map(r => r.name),
  });
})().catch(e => done({fatal: String(e)}));
"""


@dataclass
class PageReport:
    page: str
    title: str = ""
    h1: str = ""
    prose: str = ""
    n_math: int = 0
    n_images: int = 0
    n_figures: int = 0
    ipynb: list = field(default_factory=list)
    pdf: bytes = b""
    problems: list = field(default_factory=list)


def inspect_page(driver, base_url: str, html_dir: Path, page: str, pdf: bool = False) -> PageReport:
    """Load one page and list every problem a reader would meet on it; with ``pdf``, also
    print it while it is loaded (``report.pdf``), which saves loading it twice."""
    report = PageReport(page)
    if not (html_dir / f"{page}.html").is_file():
        report.problems.append(f"the page is missing from the build ({page}.html)")
        return report
    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(base_url + quote(page) + ".html")
    seen = driver.execute_async_script(_INSPECT_JS)
    if "fatal" in seen:
        report.problems.append(f"the page script failed: {seen['fatal']}")
        return report
    report.title, report.n_math, report.n_figures = seen["title"], seen["n_math"], seen["n_figures"]
    report.n_images, report.ipynb = len(seen["images"]), seen["ipynb"]
    report.h1, report.prose = seen["h1"], seen["prose"]
    if pdf:
        report.pdf = print_page(driver)
    if "404" in seen["title"] or "not found" in seen["title"].lower():
        report.problems.append(f"page not found ({seen['title']})")
    for tex in seen["untypeset"]:
        report.problems.append(f"equation not typeset by MathJax: {tex!r}")
    for tex in seen["math_errors"]:
        report.problems.append(f"MathJax error in an equation: {tex!r}")
    for context in seen["raw_tex"]:
        report.problems.append(f"raw LaTeX in the visible text: ...{context!r}...")
    for image in seen["images"]:
        if not image["ok"]:
            report.problems.append(f"image did not load: {image['src']}")
    for block in seen["stderr"]:
        report.problems.append(f"stderr/traceback block in the page: {block!r}")
    for machine_path in MACHINE_PATHS:
        if machine_path in seen["text"] or machine_path in seen["outputs"]:
            report.problems.append(f"the builder's path {machine_path!r} appears in the page")
    if "site-packages" in seen["outputs"]:
        report.problems.append("a path into site-packages appears in a cell output")
    origin = base_url.rstrip("/")
    for url in seen["resources"]:
        if not url.startswith(origin) and not url.startswith(("data:", "blob:")):
            report.problems.append(f"the page requested a resource from the network: {url}")
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE" and "/favicon.ico " not in entry.get("message", ""):
            report.problems.append(f"console error: {entry.get('message', '')[:300]}")
    for url in seen["links"]:
        problem = _check_link(url, origin, html_dir, page)
        if problem:
            report.problems.append(problem)
    return report


def _check_link(url: str, origin: str, html_dir: Path, page: str) -> str | None:
    if not url.startswith(origin + "/"):
        return None  # external links (Colab, GitHub, DOIs) are not followed offline
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/") or "index.html"
    target = html_dir / path
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"broken internal link: {url[len(origin):]}"
    anchor = unquote(parts.fragment)
    if anchor and target.suffix == ".html" and anchor not in _anchors(target):
        return f"link to a missing anchor: {url[len(origin):]}"
    return None


def search(driver, base_url: str, query: str, timeout: float = 30.0) -> list[str]:
    """The pages (without suffix) that the book's search page lists for ``query``."""
    from selenium.webdriver.common.by import By

    driver.get(base_url + "search.html?q=" + quote(query))
    deadline = time.time() + timeout
    while time.time() < deadline:
        summary = driver.find_elements(By.CSS_SELECTOR, "#search-results .search-summary, #search-results p")
        if summary and summary[0].text.strip() and "Searching" not in summary[0].text:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"the search page did not finish searching for {query!r} in {timeout} s")
    origin = base_url.rstrip("/") + "/"
    hrefs = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a")]
    return [urlsplit(h).path.lstrip("/").removesuffix(".html") for h in hrefs if h and h.startswith(origin)]


def screenshot(driver, base_url: str, page: str, path: Path, scroll_to: str | None = None) -> Path:
    """A PNG of one screen of ``page`` once its equations are typeset: the top, or the first
    element matching the CSS selector ``scroll_to`` where the page has one."""
    driver.get(base_url + quote(page) + ".html")
    driver.execute_async_script(_INSPECT_JS)
    if scroll_to:
        driver.execute_script(
            "const e = document.querySelector(arguments[0]); if (e) { e.scrollIntoView({block: 'center'}); }", scroll_to)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def print_page(driver) -> bytes:
    """The page now loaded, printed (A4, the theme's print style) to PDF bytes."""
    pdf = driver.execute_cdp_cmd("Page.printToPDF", {
        "printBackground": True, "paperWidth": 8.27, "paperHeight": 11.69,
        "marginTop": 0.5, "marginBottom": 0.5, "marginLeft": 0.5, "marginRight": 0.5,
    })
    return base64.b64decode(pdf["data"])


def join_pdf(parts: list[tuple[str, bytes]], out: Path) -> Path:
    """One PDF from (outline title, PDF bytes) parts, in order, with a bookmark per part."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for title, data in parts:
        start = len(writer.pages)
        writer.append(PdfReader(io.BytesIO(data)))
        writer.add_outline_item(title=title, page_number=start)
    writer.add_metadata({"/Title": _book_title()})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as handle:
        writer.write(handle)
    return out


def print_pdf(driver, base_url: str, pages: list[str], out: Path) -> Path:
    """Print every page once its equations are typeset and join them into one PDF."""
    parts = []
    for page in pages:
        driver.get(base_url + quote(page) + ".html")
        seen = driver.execute_async_script(_INSPECT_JS)
        parts.append((_outline_title(seen.get("h1") or seen.get("title") or page), print_page(driver)))
    return join_pdf(parts, out)


def _outline_title(title: str) -> str:
    return title.split(" — ")[0].strip().rstrip("#").strip()


def _book_title() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text()).get("title", "book")


def strip_solutions(html_dir: Path) -> list[Path]:
    """Remove the solution cells from the notebooks and Markdown sources a student site offers
    for download: cells tagged ``hide-cell`` after an "Exercises" or "Solutions" heading
    (the rule book/_ext/genrec_book.py applies to the pages)."""
    import jupytext

    from genrec_book import STUDENT_SECTIONS

    changed = []
    for path in sorted((html_dir / "_sources").rglob("*")):
        if path.suffix not in (".ipynb", ".md") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".md" and "kernelspec:" not in text[:2000]:
            continue  # a prose page, not a notebook
        notebook = jupytext.reads(text, fmt="ipynb" if path.suffix == ".ipynb" else "md:myst")
        kept, in_exercises, removed = [], False, 0
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                for line in cell.source.splitlines():
                    if line.startswith("#"):
                        in_exercises = line.lstrip("#").strip().lower().startswith(STUDENT_SECTIONS)
            if in_exercises and "hide-cell" in cell.metadata.get("tags", []):
                removed += 1
                continue
            kept.append(cell)
        if removed:
            notebook.cells = kept
            path.write_text(jupytext.writes(notebook, fmt="ipynb" if path.suffix == ".ipynb" else "md:myst"))
            changed.append(path)
    return changed


def check_site(html_dir: Path, pages: list[str] | None = None, pdf: Path | None = None) -> list[PageReport]:
    pages = pages or toc_pages(ROOT)
    with serve(html_dir) as base_url, browser() as driver:
        reports = [inspect_page(driver, base_url, html_dir, page, pdf=pdf is not None) for page in pages]
    if pdf is not None:
        join_pdf([(_outline_title(r.h1 or r.title or r.page), r.pdf) for r in reports], pdf)
        print(f"PDF: {pdf}")
    return reports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="load every page of the table of contents and report problems")
    check.add_argument("html_dir", type=Path)
    check.add_argument("--pdf", type=Path, help="also print every page into this PDF (one load per page)")
    pdf = sub.add_parser("pdf", help="print every page of the table of contents into one PDF")
    pdf.add_argument("html_dir", type=Path)
    pdf.add_argument("out", type=Path)
    strip = sub.add_parser("strip-solutions", help="remove solution cells from a student site's downloads")
    strip.add_argument("html_dir", type=Path)
    args = parser.parse_args(argv)
    if not (args.html_dir / "index.html").is_file():
        parser.error(f"{args.html_dir} holds no built book (no index.html): build it first with `bash scripts/build_book.sh`")
    if args.command == "strip-solutions":
        changed = strip_solutions(args.html_dir)
        print(f"solutions removed from {len(changed)} downloadable notebook source(s)")
        return 0
    if find_browser() is None:
        print(f"headless Chromium not installed ({INSTALL_HINT}): the browser step is skipped")
        return 0
    if args.command == "check":
        reports = check_site(args.html_dir, pdf=args.pdf)
        failed = [r for r in reports if r.problems]
        for r in reports:
            status = "ok" if not r.problems else f"{len(r.problems)} problem(s)"
            print(f"{r.page:55s} {r.n_math:4d} equations {r.n_images:3d} images  {status}")
            for problem in r.problems[:10]:
                print("    " + problem)
        print(f"{len(reports) - len(failed)}/{len(reports)} pages without problems")
        return 1 if failed else 0
    with serve(args.html_dir) as base_url, browser() as driver:
        out = print_pdf(driver, base_url, toc_pages(ROOT), args.out)
    print(f"PDF: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
