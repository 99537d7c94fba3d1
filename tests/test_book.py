"""The book renders (table of contents, cross-references, bibliography) without executing
the notebooks again: nbval already executed them in this test session."""

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_book_renders_without_warnings(tmp_path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    override = tmp_path / "_config_render.yml"
    override.write_text(yaml.safe_dump(config))
    out = tmp_path / "book"
    result = subprocess.run(
        [shutil.which("jupyter-book") or "jupyter-book", "build", str(ROOT), "--config", str(override),
         "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            assert (html / f"{chapter['file']}.html").is_file(), chapter["file"]
    bibliography = (html / "book" / "bibliography.html").read_text()
    assert "Recommendation with Generative Models" in bibliography
