"""Threads on an idle and on a busy machine: what a second torch thread costs beside another process.

    python benchmarks/threads.py [--epochs 5] [--chapters 02_protocols_metrics_baselines 12c_collaborative_llm]

Two conditions: *idle* (nothing else runs; check ``uptime`` first) and *busy* (one other
process spins on one core: ``python -c "while True: pass"``, started by this script, as a
second notebook or a build would). In each:

- **kernels**, each in a fresh process with a fixed thread count (1, then 2): BPR's fit at
  chapter 02's defaults for ``--epochs`` epochs on the ML-100K random split (seed 2020; many
  small steps, 2048 x 128 embedding lookups each), and a forward pass of SmolLM2-135M over
  8 prompts of 128 tokens (large matrix products, the language-model chapters' kind of work);
  wall and CPU seconds;
- **what ``genrec_lib.threads.choose_threads`` picks** in that condition;
- **chapters**: each of ``--chapters`` run under nbval as CI runs it (``python -m pytest
  notebooks/<chapter>.ipynb``), with no thread setting in the environment, so that the
  chapter's ``start_chapter`` chooses; ``chapter.seconds`` and ``chapter.threads`` come from
  the chapter's own results file. ``--forced`` adds runs with ``OMP_NUM_THREADS=2`` (torch's
  default on 2 cores, the behaviour before the choice existed): slow beside a busy process.

The record (``genrec_lib/records/threads.json``, package data, read by chapter 18) holds the
machine, versions, commit and every timing; the slowdown of a chapter is its busy seconds over
its idle seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "genrec_lib" / "records" / "threads.json"

_KERNEL = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
what, epochs = sys.argv[2], int(sys.argv[3])
if what == "bpr":
    from genrec_lib.data import load_split
    from genrec_lib.models import get_model
    split = load_split("ml-100k", "random", seed=2020)
    model = get_model("bpr", epochs=epochs, patience=epochs)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(split)
else:
    from genrec_lib.models.llm.lm import load_lm
    lm = load_lm()
    ids = torch.randint(0, 40000, (8, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lm.model(input_ids=ids[:1, :8])  # first call's one-off costs
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(epochs):
            lm.model(input_ids=ids)
print(json.dumps({"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2),
                  "threads": torch.get_num_threads()}))
"""


def _env(**extra) -> dict:
    """The children's environment: this process's (``main`` has removed every thread setting), this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def kernel(what: str, threads: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _KERNEL, str(threads), what, str(repeats)], env=_env(),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def chapter(name: str, forced: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = _env(GENREC_RESULTS=folder, **({"OMP_NUM_THREADS": str(forced)} if forced else {}))
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"notebooks/{name}.ipynb"],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        values = json.loads((Path(folder) / f"{name}.json").read_text())["values"] if run.returncode == 0 else {}
    return {"passed": run.returncode == 0, "wall_s": round(wall, 1), "chapter.seconds": values.get("chapter.seconds"),
            "chapter.threads": values.get("chapter.threads"), "forced_threads": forced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="BPR epochs (and LLM forward passes) per kernel run")
    parser.add_argument("--chapters", nargs="*", default=["02_protocols_metrics_baselines", "12c_collaborative_llm"])
    parser.add_argument("--forced", nargs="*", default=[], help="chapters also run with OMP_NUM_THREADS=2")
    parser.add_argument("--out", type=Path, default=RECORD)
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GENREC_THREADS"):  # let the library choose
        os.environ.pop(variable, None)
    from genrec_lib.threads import choose_threads, free_cores

    import torch

    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: the 1-minute load is {load:.2f}; the idle condition assumes an idle machine", file=sys.stderr)
    record = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "load_before": round(load, 2)},
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "epochs": args.epochs, "conditions": {}}
    for condition in ("idle", "busy"):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy" else None
        try:
            time.sleep(1.0 if spinner else 0)
            row = {"free_cores": round(free_cores(0.5), 2), "chosen_threads": choose_threads(), "kernels": {},
                   "chapters": {}}
            for what in ("bpr", "llm"):
                for threads in (1, 2):
                    row["kernels"][f"{what}/{threads}"] = kernel(what, threads, args.epochs)
                    print(condition, what, threads, row["kernels"][f"{what}/{threads}"], flush=True)
            for name in args.chapters:
                row["chapters"][name] = chapter(name)
                print(condition, name, row["chapters"][name], flush=True)
            for name in args.forced:
                row["chapters"][f"{name}/forced-2"] = chapter(name, forced=2)
                print(condition, name, "forced 2", row["chapters"][f"{name}/forced-2"], flush=True)
        finally:
            if spinner:
                spinner.kill()
        record["conditions"][condition] = row
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
