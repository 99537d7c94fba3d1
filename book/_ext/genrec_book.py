"""Sphinx extension for the companion book: pages built from the project's own files.

- ``{chapter-times}``: a table of every chapter in the table of contents with the execution
  time its notebook recorded in ``results/<chapter>.json`` (``chapter.seconds``) on the last
  run, or a note that no results file exists. Nothing is typed in: the page is re-read on
  every build, so it always shows the results files the build found.
- ``{syllabus}``: a course plan whose rows name chapters by number (``| 1 | Topic | 01 02 12b |``);
  each number becomes a link to that chapter, looked up in the table of contents.
- A student version (``GENREC_STUDENT=1``, ``bash scripts/build_book.sh --student``): the
  cells tagged ``hide-cell`` under an "Exercises" or "Solutions" heading (the solutions)
  are removed from the pages; the exercises themselves stay.
- Drops scripts that an extension added twice to a page (sphinx-thebe's configuration is
  added twice by Jupyter Book 1 and its second ``const`` declaration is a JavaScript error).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

TIME_RECORD = "chapter.seconds"  # the name genrec_lib.results.finish_chapter records


def toc_pages(root: Path) -> list[str]:
    """Every document of ``root/_toc.yml`` in reading order (the root page first), no suffix."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    pages = [_strip(toc["root"])]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(_strip(entry["file"]))
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


def _strip(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix("")) if path.suffix in (".md", ".ipynb", ".rst") else name


def chapter_pages(root: Path) -> list[str]:
    """The table of contents' executable chapters: pages whose source is a notebook."""
    chapters = []
    for page in toc_pages(root):
        source = Path(root) / f"{page}.md"
        if source.is_file():
            head = source.read_text(errors="replace")[:2000]
            if head.startswith("---") and "kernelspec:" in head.split("\n---", 1)[0]:
                chapters.append(page)
        elif (Path(root) / f"{page}.ipynb").is_file():
            chapters.append(page)
    return chapters


def results_dir(root: Path) -> Path:
    """Where the notebooks write their results (``$GENREC_RESULTS`` as in genrec_lib.results)."""
    return Path(os.environ.get("GENREC_RESULTS", Path(root) / "results"))


def chapter_times(root: Path) -> list[dict]:
    """One row per chapter: page, seconds (or None) and the results file's time stamp."""
    rows = []
    for page in chapter_pages(root):
        path = results_dir(root) / f"{Path(page).name}.json"
        row = {"page": page, "file": path, "seconds": None, "updated": None, "exists": path.is_file()}
        if row["exists"]:
            data = json.loads(path.read_text())
            row["updated"] = data.get("updated")
            seconds = data.get("values", {}).get(TIME_RECORD)
            row["seconds"] = float(seconds) if isinstance(seconds, (int, float)) else None
        rows.append(row)
    return rows


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


class _DynamicPage(SphinxDirective):
    """A directive whose page is re-read on every build (its inputs are not Markdown)."""

    def mark_dynamic(self):
        pages = getattr(self.env, "genrec_dynamic_pages", set())
        pages.add(self.env.docname)
        self.env.genrec_dynamic_pages = pages

    def parse_markdown(self, text: str) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(text.splitlines(), self.content_offset, container)
        return container.children


class ChapterTimes(_DynamicPage):
    has_content = False

    def run(self):
        self.mark_dynamic()
        root = Path(self.env.srcdir)
        rows = chapter_times(root)
        for row in rows:
            if row["exists"]:
                self.env.note_dependency(str(row["file"]))
        lines = ["| Chapter | Execution time on the last run | Results file written |", "|---|---|---|"]
        total, missing = 0.0, []
        for row in rows:
            link = f"{{doc}}`/{row['page']}`"
            if not row["exists"]:
                missing.append(row["page"])
                lines.append(f"| {link} | no results file: the chapter has not run here | — |")
            elif row["seconds"] is None:
                lines.append(f"| {link} | no time recorded (`{TIME_RECORD}` missing) | {row['updated']} |")
            else:
                total += row["seconds"]
                lines.append(f"| {link} | {_minutes(row['seconds'])} | {row['updated']} |")
        timed = sum(row["seconds"] is not None for row in rows)
        summary = (
            f"{timed} of {len(rows)} chapters recorded a time; together they took {_minutes(total)}. "
            if timed else f"None of the {len(rows)} chapters has recorded a time in this build's results folder. "
        )
        summary += (
            f"This page was built on {time.strftime('%Y-%m-%d')} by a machine with "
            f"{os.cpu_count()} CPU cores, from the results files in `results/`."
        )
        return self.parse_markdown("\n".join(lines) + "\n\n" + summary + "\n")


class Syllabus(_DynamicPage):
    """Rows ``| session | topic | NN NN |``; chapter numbers become links."""

    has_content = True
    option_spec = {"session": directives.unchanged}

    def run(self):
        self.mark_dynamic()
        root = Path(self.env.srcdir)
        by_number = {}
        for page in toc_pages(root):
            match = re.match(r"(\d\d[a-z]?)_", Path(page).name)  # "12_" and its companion page "12b_"
            if match:
                by_number.setdefault(match.group(1), page)
        session = self.options.get("session", "Week")
        lines = [f"| {session} | Topic | Chapters |", "|---|---|---|"]
        for raw in self.content:
            cells = [c.strip() for c in raw.strip().strip("|").split("|")]
            if not raw.strip():
                continue
            if len(cells) != 3:
                raise self.error(f"syllabus rows are '| session | topic | chapter numbers |', got {raw!r}")
            links = []
            for number in cells[2].split():
                page = by_number.get(number.zfill(2))
                links.append(f"{{doc}}`/{page}`" if page else f"chapter {number} (not in this build)")
            lines.append(f"| {cells[0]} | {cells[1]} | {'<br>'.join(links) or '—'} |")
        return self.parse_markdown("\n".join(lines) + "\n")


def _always_reread(app, env, added, changed, removed):
    return sorted(getattr(env, "genrec_dynamic_pages", set()) - set(removed))


def _purge(app, env, docname):
    getattr(env, "genrec_dynamic_pages", set()).discard(docname)


STUDENT_SECTIONS = ("exercises", "solutions")


def _remove_solutions(app, doctree):
    if os.environ.get("GENREC_STUDENT", "") in ("", "0"):
        return
    for section in list(doctree.findall(nodes.section)):
        title = section.next_node(nodes.title)
        if title is None or not title.astext().strip().lower().startswith(STUDENT_SECTIONS):
            continue
        for cell in list(section.findall(nodes.container)):
            if "tag_hide-cell" in cell.get("classes", []) and cell.parent is not None:
                cell.parent.remove(cell)


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    """Drop a page's repeated scripts (same file or inline body), in place so that scripts
    added later for this page (MathJax) are kept."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""), str(getattr(script, "attributes", {}).get("body", "")))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    app.add_directive("chapter-times", ChapterTimes)
    app.add_directive("syllabus", Syllabus)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-purge-doc", _purge)
    app.connect("doctree-read", _remove_solutions)
    app.connect("html-page-context", _dedupe_scripts, priority=100)  # before a theme returns
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
