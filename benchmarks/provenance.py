"""What a benchmark record says about the run that wrote it: the commit, the machine and the versions.

Shared by the benchmark scripts beside this file (they run as ``python benchmarks/<name>.py``,
so this module imports as ``provenance``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch


def commit(root: Path, watch: tuple[str, ...] = ()) -> str:
    """The short commit of ``root``; with ``watch`` paths, says when any of them has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    if watch:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *watch],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        if dirty:
            head += " (library files modified)"
    return head


def machine(note: str = "") -> str:
    """Processor, visible CPUs and torch threads, with an optional note on how the machine was shared."""
    text = f"{platform.machine()}, {os.cpu_count()} CPU(s) visible, torch threads {torch.get_num_threads()}"
    return f"{text} {note}" if note else text


def versions(*packages: str) -> str:
    """``python X, torch Y, <package> Z, ...`` for the given distribution names (torch always first)."""
    return ", ".join([f"python {platform.python_version()}", f"torch {torch.__version__}",
                      *(f"{name} {version(name)}" for name in packages)])


def stamp() -> str:
    """The current time in UTC, to the minute: the key of one run in a record."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
