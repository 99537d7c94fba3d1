"""The notebooks' machine-readable results: ``record`` headline numbers, ``read`` them back.

Each chapter writes ``results/<chapter>.json`` (git-ignored; ``$GENREC_RESULTS`` moves
the folder). Tests check these files with tolerances, and later chapters (the
leaderboard) read them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from genrec_lib.assets import PROJECT_ROOT


def results_dir() -> Path:
    return Path(os.environ.get("GENREC_RESULTS", PROJECT_ROOT / "results"))


def _path(chapter: str) -> Path:
    if not chapter or "/" in chapter or chapter.startswith("."):
        raise ValueError(f"chapter must be a plain name such as '02_protocols_metrics_baselines', got {chapter!r}")
    return results_dir() / f"{chapter}.json"


def read(chapter: str) -> dict:
    """All values recorded by ``chapter`` (empty when the chapter has not run)."""
    path = _path(chapter)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["values"]


def record(chapter: str, name: str, value) -> None:
    """Store one headline value (a number, string or list of numbers) for ``chapter``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"refusing to record a non-finite value for {chapter}/{name}: {value}")
    path = _path(chapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = read(chapter)
    values[name] = value
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"chapter": chapter, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "values": values}, indent=1, sort_keys=True))
    tmp.replace(path)


_CHAPTER_STARTS: dict[str, float] = {}


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where the notebook, or the book built from it, shows output)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def start_chapter(chapter: str, threads: int | str = "auto") -> None:
    """Start timing ``chapter``'s execution (call in the chapter's first code cell).

    Also sets torch's thread count, one per free core unless ``threads`` (or ``GENREC_THREADS``)
    says otherwise (:func:`genrec_lib.threads.set_threads`), records it as ``chapter.threads``
    beside the ``chapter.seconds`` that :func:`finish_chapter` records.
    """
    from genrec_lib.threads import set_threads

    _path(chapter)  # validates the name
    record(chapter, "chapter.threads", set_threads(threads))
    _CHAPTER_STARTS[chapter] = time.perf_counter()


def finish_chapter(chapter: str, budget_s: float | None = None) -> float:
    """Record ``chapter.seconds``, the time since :func:`start_chapter`, and return it.

    Over ``budget_s`` it warns (a slower machine is not an error).
    """
    import warnings

    if chapter not in _CHAPTER_STARTS:
        raise ValueError(f"finish_chapter({chapter!r}) without start_chapter({chapter!r}) earlier in this kernel")
    seconds = time.perf_counter() - _CHAPTER_STARTS[chapter]
    record(chapter, "chapter.seconds", round(seconds, 1))
    if budget_s is not None and seconds > budget_s:
        message = f"{chapter} took {seconds:.0f} s, over its budget of {budget_s:.0f} s on 2 CPU cores"
        if _in_notebook():
            # In a notebook a warning renders as a stderr block carrying the kernel's temporary
            # file path; the rendered book shows a plain note instead.
            print(f"Note: {message} (a slower or busier machine than the budget assumes).")
        else:
            warnings.warn(message, stacklevel=2)
    return seconds


RECORDS = Path(__file__).resolve().parent / "records"
"""The benchmark records that ship with the library (package data): measured outside the
book's build by the scripts in the repository's ``benchmarks/`` folder, read by chapters."""


def benchmark_record(name: str, path: str | Path | None = None) -> dict:
    """A benchmark's JSON record, ``genrec_lib/records/<name>.json``, measured outside the book's build.

    ``benchmark_record("llmrank_finetuned")`` is what ``benchmarks/llmrank_finetuned.py``
    recorded: every language model on all 200 ``llmrank`` users (chapter 12). The records
    ship inside the library (package data), so a chapter run without the repository reads them too.
    """
    if path is None and (not name or "/" in name or name.startswith(".")):
        raise ValueError(f"name must be a plain record name such as 'llmrank_finetuned', got {name!r}")
    file = Path(path) if path is not None else RECORDS / f"{name}.json"
    if not file.is_file():
        known = sorted(p.stem for p in RECORDS.glob("*.json")) if RECORDS.is_dir() else []
        raise FileNotFoundError(f"no benchmark record at {file} (records shipped with the library: {known}); "
                                f"run benchmarks/{name}.py from the repository to measure it (see benchmarks/README.md)")
    return json.loads(file.read_text())


def side_by_side(path: str | Path | None = None):
    """The side-by-side table with RecBole 1.2.1 (``genrec_lib/records/side_by_side.csv``) and its runs' provenance.

    Chapters that compare the library with RecBole read their numbers from here and only
    from here (see the repository's ``benchmarks/README.md``; the table is measured outside
    the book's build and ships with the library as package data).

    Returns:
        ``(table, runs)``: a DataFrame with one row per (protocol, model, library), and a
        dict ``{run: {"seed", "versions", "machine", "note"}}`` for the ``run`` column.
    """
    import pandas as pd

    csv = Path(path) if path is not None else RECORDS / "side_by_side.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"no side-by-side table at {csv}: run benchmarks/side_by_side.py from the "
                                "repository (see benchmarks/README.md)")
    table = pd.read_csv(csv)
    runs_file = csv.with_name("side_by_side_runs.json")
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else {}
    return table, runs
