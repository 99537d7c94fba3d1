"""The notebooks' machine-readable results: ``record`` headline numbers, ``read`` them back.

Each chapter writes ``results/<chapter>.json`` (git-ignored; ``$GENREC_RESULTS`` moves
the folder). Tests check these files with tolerances, and later chapters (the
leaderboard) read them.
"""

from __future__ import annotations

import json
import math
import os
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
