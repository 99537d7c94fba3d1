"""Run the chapters as a reader does: without the repository, in a clean Colab-like environment.

    python scripts/standalone_check.py --smoke                 # every chapter: setup cell, parameters, imports
    python scripts/standalone_check.py --full                  # every chapter end to end -> benchmarks/standalone.json
    python scripts/standalone_check.py --full --chapters 01 03 # some chapters (name prefixes)
    python scripts/standalone_check.py --full --commit HEAD    # wheel and notebooks of a commit, not the working tree

1. Builds the library's wheel from the checkout (``pip wheel --no-deps``).
2. Makes a *base*: the packages Colab preinstalls that the book's pins cover (``BASE``: torch,
   torchvision, transformers, tokenizers, safetensors, accelerate, numpy, pandas, scipy,
   scikit-learn, matplotlib, tqdm, PyYAML, Pillow, ipykernel, ipywidgets, nbclient, and what
   they depend on), at the versions of ``requirements/*.txt``. ``--base site`` (the default)
   links them from this interpreter's site-packages after checking their versions against the
   pins (seconds, no copy); ``--base pip`` installs them with pip into a venv (minutes).
   Colab also ships packages the chapters use, such as timm or peft; they are left out of the
   base on purpose, so a chapter gets them only from its own setup cell.
3. For each chapter, a virtual environment that sees only the base (a ``.pth`` file), and the
   chapter's ``.ipynb`` copied alone into an empty folder outside the checkout. Chapters whose
   setup cells are identical share one environment (their cells install the same things).
4. Executes the notebook (nbclient, in that environment's kernel) with ``GENREC_WHEEL``
   pointing at the wheel, so its own setup cell installs the library with its extras and asset
   packages, exactly as in Colab. ``--smoke``: the cells up to the one tagged ``parameters``
   (the setup cell among them), then one cell with every top-level import of the chapter; the
   chapters of one environment run in one kernel, the shared setup cell once
   (:func:`run_smoke_group`), which keeps the check within the CI budget.
   ``--full``: the whole chapter; the leaderboard entries it saves are kept in ``<work>/entries/<chapter>/``
   (``scripts/ship_leaderboard_entries.py`` turns them into the record chapter 16 reads).

A chapter fails with the error it raised; a ``ModuleNotFoundError`` names the setup cell
(``scripts/setup_cells.py``) as what to fix. ``--full`` merges each chapter's pass/fail,
seconds (wall, CPU, and the setup cell's install) and the commit into ``benchmarks/standalone.json``.
One thread per chapter (``--threads``); chapters run one after another.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT  # where the wheel, the pins and the notebooks come from (--commit: an export of that commit)
NOTEBOOKS = SOURCE / "notebooks"
#: the wheel, base and environments (git-ignored build/; $GENREC_STANDALONE_WORK moves it, e.g. for a test run
#: beside a long --full run, which must not see its wheel rebuilt)
WORK = Path(os.environ.get("GENREC_STANDALONE_WORK", ROOT / "build" / "standalone"))
RESULTS = ROOT / "benchmarks" / "standalone.json"

#: What Colab preinstalls and the book pins (the check's clean base). Colab has many more
#: packages (timm, peft, sentence-transformers, seaborn, ...); those a chapter needs must
#: come from its setup cell, so they are not here.
BASE = ["torch", "torchvision", "transformers", "tokenizers", "safetensors", "accelerate", "numpy", "pandas",
        "scipy", "scikit-learn", "matplotlib", "tqdm", "PyYAML", "pillow", "ipykernel", "ipywidgets", "nbclient",
        "pip", "setuptools"]

KERNEL = "genrec-standalone"

RUNNER = r"""
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path, timeout, kernel = sys.argv[1], int(sys.argv[2]), sys.argv[3]
go_on = len(sys.argv) > 4 and sys.argv[4] == "go-on"  # run every cell, errors or not (a group of chapters)
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, record_timing=True, allow_errors=go_on,
                        resources={"metadata": {"path": str(__import__("pathlib").Path(path).parent)}})
start, error = time.perf_counter(), None
try:
    client.execute()
except CellExecutionError as e:
    error = {"ename": e.ename, "evalue": str(e.evalue)[:500]}
except Exception as e:  # the kernel died, a timeout, ...
    error = {"ename": type(e).__name__, "evalue": str(e)[:500]}
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
failed_cell, cell_errors = None, {}
for i, cell in enumerate(nb.cells):
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            cell_errors.setdefault(i, {"ename": o.get("ename", ""), "evalue": str(o.get("evalue", ""))[:500]})
            failed_cell = i if failed_cell is None else failed_cell
timing = {}
for i, cell in enumerate(nb.cells):
    ex = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
        from datetime import datetime
        t0 = datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
        timing[i] = (t1 - t0).total_seconds()
nbformat.write(nb, path)
print("RESULT " + json.dumps({"seconds": round(seconds, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                              "error": error, "failed_cell": failed_cell, "cell_seconds": timing,
                              "cell_errors": cell_errors}))
"""


def log(message: str) -> None:
    print(f"[standalone {time.strftime('%H:%M:%S')}] {message}", flush=True)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """``{canonical name: version}`` from requirements/*.txt (the book's one list of pins)."""
    found = {}
    for file in sorted((SOURCE / "requirements").glob("*.txt")):
        for line in file.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                found[canonical(name)] = version.strip()
    return found


# --- the wheel and the base --------------------------------------------------------------

def build_wheel(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(SOURCE),
                    "-w", str(out)], check=True)
    wheels = sorted(out.glob("genrec_lib-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one genrec_lib wheel in {out}, found {wheels}")
    return wheels[0]


def _closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``names`` need, with their dependencies (and those of requested extras)."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(name, "") for name in names]
    while todo:
        name, extra = todo.pop()
        name = canonical(name)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            dist = seen.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in map(canonical, names):
                raise SystemExit(f"the base package {name} is not installed here; run bash scripts/install.sh "
                                 "or use --base pip")
            continue  # an optional dependency this platform does without
        seen[name] = dist
        for requirement in dist.requires or []:
            req = Requirement(requirement)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, "")] + [(req.name, e) for e in req.extras]
    return seen


def base_from_site(target: Path) -> dict[str, str]:
    """Link the base packages (and their dependencies) from this interpreter into ``target``."""
    wanted = pins()
    dists = _closure(BASE)
    wrong = {n: (d.version, wanted[n]) for n, d in dists.items() if n in wanted and d.version != wanted[n]}
    if wrong:
        raise SystemExit(f"installed versions differ from requirements/*.txt: {wrong}; "
                         "run bash scripts/install.sh, or use --base pip")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for dist in dists.values():
        site = Path(dist.locate_file(""))
        tops = set()
        for file in dist.files or []:
            first = Path(file).parts[0]
            if first not in ("..", "__pycache__") and not first.endswith(".pth"):
                tops.add(first)
        for top in tops:
            link = target / top
            if not link.exists() and (site / top).exists():
                link.symlink_to(site / top)
    return {n: d.version for n, d in sorted(dists.items())}


def base_from_pip(target: Path) -> dict[str, str]:
    """A real venv with the base installed by pip (PyPI or the local cache) at the book's pins."""
    wanted = pins()
    venv = target.parent / "base-venv"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    specs = [f"{name}=={wanted[canonical(name)]}" if canonical(name) in wanted else name for name in BASE]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *specs], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(site)
    versions = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                              check=True).stdout
    return {canonical(p["name"]): p["version"] for p in json.loads(versions)}


def make_env(path: Path, base: Path) -> Path:
    """A venv at ``path`` that sees the standard library, ``base`` and what gets installed into it."""
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_colab_like_base.pth").write_text(str(base.resolve()) + "\n")
    spec = path / "share" / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "genrec standalone", "language": "python"}))
    return python


# --- notebooks --------------------------------------------------------------------------

def chapter_names(selected: list[str] | None) -> list[str]:
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    if not selected:
        return names
    chosen = []
    for prefix in selected:
        matches = [n for n in names if n == prefix or n.startswith(prefix + "_")]
        if not matches:
            raise SystemExit(f"no chapter matches {prefix!r}; chapters: {', '.join(names)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def import_statements(source: str) -> list[str]:
    """The top-level import statements of a code cell (IPython magics and shell lines dropped)."""
    text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__":
            out.append(ast.get_source_segment(text, node))
    return out


def smoke_notebook(nb):
    """Cells up to and including the ``parameters`` cell, then one cell with every import of the chapter."""
    import nbformat

    cells = []
    for index, cell in enumerate(nb.cells):
        cells.append(cell)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            rest = nb.cells[index + 1:]
            break
    else:
        raise SystemExit("no cell tagged 'parameters'")
    imports = []
    for cell in rest:
        if cell.cell_type == "code":
            imports += [s for s in import_statements(cell.source) if s not in imports]
    small = copy.deepcopy(nb)
    small.cells = cells + [nbformat.v4.new_code_cell("\n".join(imports))]
    return small


def setup_source(nb) -> str:
    first = next(c for c in nb.cells if c.cell_type == "code")
    return first.source


def env_name(setup: str) -> str:
    """Chapters with the same setup cell share an environment, named after the cell's text."""
    import hashlib

    return "env-" + hashlib.sha1(setup.encode()).hexdigest()[:10]


def _execute(nb, name: str, python: Path, env_dir: Path, wheel: Path, timeout: int, threads: int,
             go_on: bool = False) -> tuple[dict, Path]:
    """Run notebook ``nb`` as ``<name>.ipynb`` alone in an empty temporary folder, in ``env_dir``'s
    kernel, with ``GENREC_WHEEL`` set: the runner's result and the folder."""
    import nbformat

    folder = Path(tempfile.mkdtemp(prefix=f"genrec-standalone-{name[:3]}"))
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    env = {k: v for k, v in os.environ.items()
           if k in ("HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "CI", "GENREC_STAMPS", "GENREC_LLM")
           or k.startswith("PIP_")}
    env.update({
        "PATH": f"{python.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GENREC_WHEEL": str(wheel), "GENREC_RESULTS": str(folder / "results"),
        "JUPYTER_PATH": str(env_dir / "share" / "jupyter"), "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", "PYTHONNOUSERSITE": "1",
    })
    proc = subprocess.run([str(python), "-c", RUNNER, str(path), str(timeout), KERNEL] + (["go-on"] if go_on else []),
                          cwd=folder, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {"seconds": None, "cpu_s": None, "failed_cell": None, "cell_seconds": {}, "cell_errors": {},
                "error": {"ename": "RunnerError", "evalue": (proc.stderr or proc.stdout)[-800:]}}, folder
    return json.loads(lines[-1][len("RESULT "):]), folder


def run_chapter(name: str, mode: str, python: Path, env_dir: Path, wheel: Path, timeout: int = 900, threads: int = 1,
                keep: bool = False, source: Path | None = None) -> dict:
    """Execute one chapter's notebook (``source``, default ``notebooks/<name>.ipynb``) copied alone
    into an empty temporary folder, in the environment ``env_dir``, against ``wheel``."""
    import nbformat

    nb = nbformat.read(source or NOTEBOOKS / f"{name}.ipynb", as_version=4)
    if mode == "smoke":
        nb = smoke_notebook(nb)
    result, folder = _execute(nb, name, python, env_dir, wheel, timeout, threads)
    result.pop("cell_errors", None)
    setup_index = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    setup_s = result.pop("cell_seconds", {}).get(str(setup_index))
    result["setup_s"] = round(setup_s, 1) if setup_s is not None else None
    result["ok"] = result["error"] is None
    entries = folder / "results" / "leaderboard"
    if mode == "full" and entries.is_dir():  # the leaderboard entries the chapter saved (for the shipped record)
        target = env_dir.parent / "entries" / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(entries, target)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        result["folder"] = str(folder)
    return result


def run_smoke_group(names: list[str], python: Path, env_dir: Path, wheel: Path, timeout: int = 900,
                    threads: int = 1, keep: bool = False, sources: dict[str, Path] | None = None) -> dict[str, dict]:
    """The smoke check of chapters that share one setup cell (and so one environment), in one kernel.

    Each chapter's code cells up to ``parameters`` and its import cell (:func:`smoke_notebook`)
    run one after another, with ``%reset -f`` between chapters: each starts from an empty
    namespace, while the modules already imported stay loaded (what one chapter imported is
    installed in the shared environment anyway, so another chapter's import of it passes or
    fails as it would in a fresh kernel). The setup cell, identical for all, runs for the first
    chapter only; a later one would find everything installed. One kernel start and one import
    of torch per environment instead of per chapter is what keeps the check cheap.
    """
    import nbformat

    sources = {name: (sources or {}).get(name, NOTEBOOKS / f"{name}.ipynb") for name in names}
    cells, spans = [], {}
    for name in names:
        code = [c for c in smoke_notebook(nbformat.read(sources[name], as_version=4)).cells if c.cell_type == "code"]
        if spans:
            code[0] = nbformat.v4.new_code_cell(f"# this chapter's setup cell is {names[0]}'s, which ran above")
        spans[name] = (len(cells), len(cells) + len(code))
        cells += code + [nbformat.v4.new_code_cell("%reset -f")]
    first = nbformat.read(sources[names[0]], as_version=4)
    group = nbformat.v4.new_notebook(cells=cells, metadata=first.metadata)
    result, folder = _execute(group, f"smoke-{names[0]}", python, env_dir, wheel, timeout, threads, go_on=True)
    timing = {int(i): t for i, t in result.get("cell_seconds", {}).items()}
    errors = {int(i): e for i, e in result.get("cell_errors", {}).items()}
    rows = {}
    for name, (a, b) in spans.items():
        failed = next((i for i in range(a, b) if i in errors), None)
        finished = all(i in timing for i in range(a, b))
        error = errors[failed] if failed is not None else (None if finished else result["error"] or
                                                             {"ename": "RunnerError", "evalue": "cells did not run"})
        rows[name] = {"ok": error is None, "error": error, "failed_cell": None if failed is None else failed - a,
                      "seconds": round(sum(timing.get(i, 0.0) for i in range(a, b)), 1),
                      "cpu_s": result["cpu_s"] if name == names[0] else None,  # the group's, on its first chapter
                      "setup_s": round(timing[a], 1) if a in timing and name == names[0] else None}
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def explain(name: str, result: dict) -> str:
    error = result["error"]
    text = f"{name}: {error['ename']}: {error['evalue'].strip().splitlines()[-1] if error['evalue'].strip() else ''}"
    if result.get("failed_cell") is not None:
        text += f" (cell {result['failed_cell']})"
    if error["ename"] in ("ModuleNotFoundError", "ImportError") or "AssetMissingError" in error["ename"]:
        text += ("\n    the chapter's setup cell does not install what it needs: add the extra or asset package to "
                 f"CHAPTERS['{name}'] in scripts/setup_cells.py and run python scripts/setup_cells.py")
    return text


def commit() -> tuple[str, bool]:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return head or "unknown", dirty


def export(rev: str, work: Path) -> tuple[str, bool]:
    """Export commit ``rev`` (``git archive``) into ``work`` and read the wheel, pins and notebooks from there,
    so that a long run measures one commit while the working tree goes on changing."""
    global SOURCE, NOTEBOOKS
    head = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        raise SystemExit(f"--commit {rev!r} is not a commit of {ROOT}: {head.stderr.strip()}")
    head = head.stdout.strip()
    target = work / f"src-{head}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", head], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    SOURCE, NOTEBOOKS = target, target / "notebooks"
    return head, False


def record(rows: dict[str, dict], base_versions: dict[str, str], out: Path, threads: int,
           built_from: tuple[str, bool] | None = None, note: str | None = None) -> None:
    head, dirty = built_from or commit()
    data = json.loads(out.read_text()) if out.is_file() else {"chapters": {}}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for name, row in rows.items():
        data["chapters"][name] = {
            "ok": row["ok"], "seconds": row["seconds"], "cpu_s": row["cpu_s"], "setup_s": row["setup_s"],
            "error": None if row["ok"] else f"{row['error']['ename']}: {row['error']['evalue'][-300:]}",
            "commit": head + ("+uncommitted" if dirty else ""), "date": now, "threads": threads,
            "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}",
        }
        if note:
            data["chapters"][name]["note"] = note
    data["base"] = base_versions
    data["chapters"] = dict(sorted(data["chapters"].items()))
    out.write_text(json.dumps(data, indent=1) + "\n")
    log(f"recorded {', '.join(rows)} in {out}")


def table(rows: dict[str, dict]) -> str:
    lines = ["| chapter | result | seconds | CPU s | setup s |", "|---|---|---:|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {'pass' if row['ok'] else 'FAIL'} | {row['seconds']} | {row['cpu_s']} | "
                     f"{row['setup_s'] if row['setup_s'] is not None else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke", action="store_true", help="setup, parameters and import cells of each chapter")
    mode.add_argument("--full", action="store_true", help="each chapter end to end")
    parser.add_argument("--chapters", nargs="*", help="chapter names or number prefixes (default: all)")
    parser.add_argument("--base", choices=["site", "pip"], default="site")
    parser.add_argument("--work", default=str(WORK), help="folder for the wheel and the environments")
    parser.add_argument("--wheel", help="use this wheel instead of building one")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help=f"results file (--full default: {RESULTS.relative_to(ROOT)}; 'none' writes nothing)")
    parser.add_argument("--commit", help="run the wheel and notebooks of this commit (git archive), not the working tree")
    parser.add_argument("--note", help="a remark stored with each chapter's row (e.g. what else loaded the machine)")
    parser.add_argument("--keep", action="store_true", help="keep each chapter's folder with its executed notebook")
    args = parser.parse_args(argv)
    mode_name = "smoke" if args.smoke else "full"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # the checkout the wheel and the notebooks come from ("+uncommitted": with local edits)
    built_from = export(args.commit, work) if args.commit else commit()
    names = chapter_names(args.chapters)
    wheel = Path(args.wheel) if args.wheel else build_wheel(work / "dist")
    log(f"wheel {wheel.name}")
    base = work / "base"
    base_versions = base_from_site(base) if args.base == "site" else base_from_pip(base)
    log(f"base: {len(base_versions)} distributions ({args.base}); {mode_name} run of {len(names)} chapter(s)")

    import nbformat

    out = args.out if args.out is not None else (str(RESULTS) if args.full else "none")
    envs: dict[str, tuple[Path, Path]] = {}
    rows: dict[str, dict] = {}
    setups = {name: setup_source(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)) for name in names}
    groups: dict[str, list[str]] = {}  # setup cell -> its chapters (one environment each)
    for name in names:
        groups.setdefault(setups[name], []).append(name)
    # --full: one chapter at a time, each in its own kernel; --smoke: the chapters of one environment in one kernel
    batches = [(setups[name], [name]) for name in names] if args.full else list(groups.items())
    for setup, batch in batches:
        if setup not in envs:
            env_dir = work / env_name(setup)
            envs[setup] = (env_dir, make_env(env_dir, base))
        env_dir, python = envs[setup]
        if args.full:
            done = {batch[0]: run_chapter(batch[0], "full", python, env_dir, wheel, args.timeout, args.threads, args.keep)}
        else:
            done = run_smoke_group(batch, python, env_dir, wheel, args.timeout, args.threads, args.keep)
        for name, row in done.items():
            rows[name] = row
            log(f"{name}: {'pass' if row['ok'] else 'FAIL'} in {row['seconds']} s (CPU {row['cpu_s']} s, "
                f"setup {row['setup_s']} s, {env_dir.name})")
            if not row["ok"]:
                log("  " + explain(name, row))
            if out != "none":  # after every chapter, so a run cut short keeps what it measured
                record({name: row}, base_versions, Path(out), args.threads, built_from, args.note)
    print(table(rows))
    for stale in work.glob("env-*"):  # environments of setup cells this run did not use
        if stale not in {env_dir for env_dir, _ in envs.values()}:
            shutil.rmtree(stale, ignore_errors=True)
    failed = [n for n, r in rows.items() if not r["ok"]]
    log(f"{len(rows) - len(failed)} of {len(rows)} passed in {time.perf_counter() - start:.0f} s")
    if failed:
        print("FAILED:\n  " + "\n  ".join(explain(n, rows[n]) for n in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
