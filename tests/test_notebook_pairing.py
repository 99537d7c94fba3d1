"""Each MyST notebook (the source) and its generated .ipynb (for Colab) agree cell by cell."""

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.md"))


def cells(notebook):
    return [(cell.cell_type, cell.source.strip(), sorted(cell.metadata.get("tags", []))) for cell in notebook.cells]


def test_every_notebook_is_paired():
    stems_md = {p.stem for p in SOURCES}
    stems_ipynb = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert stems_md == stems_ipynb, f"unpaired: {sorted(stems_md ^ stems_ipynb)}; run: jupytext --to ipynb notebooks/<name>.md"


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_markdown_and_ipynb_agree(source):
    md = jupytext.read(source)
    ipynb = jupytext.read(source.with_suffix(".ipynb"))
    assert cells(md) == cells(ipynb), f"{source.name} and its .ipynb differ; regenerate: jupytext --to ipynb {source.relative_to(NOTEBOOKS.parent)}"
    assert md.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_chapter_has_the_house_sections(source):
    notebook = jupytext.read(source)
    text = "\n".join(c.source for c in notebook.cells)
    tags = [t for c in notebook.cells for t in c.metadata.get("tags", [])]
    assert "parameters" in tags, "a cell tagged `parameters` is required"
    assert "Learning goals" in text or "learning goals" in text
    assert "Exercises" in text
    assert "assert " in text, "a chapter checks its own results with assert cells"
