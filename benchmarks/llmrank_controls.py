"""Chapter 10's personalisation controls on all 200 ``llmrank`` users.

Chapter 10 scores the zero-shot language model on a few users in its own run; its
conclusions about where the ranking comes from (the user's own history against another
user's history or none, few-shot examples, the position of the target in a listed prompt)
need paired tests over many more users than fit the chapter's CPU budget. This script
scores, on the same 200 users x 20 candidates as ``genrec bench --protocol llmrank``
(temporal leave-one-out, seed 2020, 20 history items), every candidate of every user under
each condition and records the raw scores, so that the chapter computes the metrics and the
paired tests itself and checks that the scores of the users it scores in its own run equal
the record's:

- ``own``: summed title log-likelihood after the user's own last 20 titles (``llm-zeroshot``);
- ``other_history``: the same, after the next user's history (user k reads user k+1's, mod 200);
- ``no_history``: log p(title | the same request without any history), the prior that
  ``llm-calibrated`` subtracts;
- ``fewshot``: ``llm-fewshot`` (two solved examples from other users' training histories);
- ``listed_first`` / ``listed_last``: candidates listed in the prompt (10 history items), the
  target moved to the first or the last place, the others in their task order; scores in
  that listed order.

Single-threaded, saved after every 10 users (a run cut short keeps its rows and resumes).
Run from the repository root (measured single-threaded on a shared 2-core machine: about
4 CPU-seconds per user for each history condition, less for the cached no-history prior;
the shipped record holds the first users it reached, every condition on the same users)::

    OMP_NUM_THREADS=1 python benchmarks/llmrank_controls.py [--conditions own no_history ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import provenance  # benchmarks/provenance.py: commit, machine and versions of a run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITIONS = ("own", "no_history", "other_history", "fewshot", "listed_first", "listed_last")
RESULTS = ROOT / "genrec_lib" / "records" / "llmrank_controls.json"  # package data: chapter 10 reads it
HISTORY_LEN = 20
LISTED_HISTORY = 10


def listed(candidates: np.ndarray, target: int, position: int) -> np.ndarray:
    """``candidates`` with ``target`` moved to ``position``, the others in their order (chapter 10)."""
    others = [int(i) for i in candidates if i != target]
    return np.array(others[:position] + [int(target)] + others[position:])


def main(argv=None) -> None:
    import torch

    torch.set_num_threads(1)
    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import make_llmrank_task
    from genrec_lib.models import get_model
    from genrec_lib.models.llm.lm import load_lm

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    split = load_split("ml-100k", "loo", seed=args.seed)
    task = make_llmrank_task(split, "test", n_users=args.users, history_len=HISTORY_LEN, seed=args.seed)
    lm = load_lm()
    zeroshot = get_model("llm-zeroshot", n_history=HISTORY_LEN).fit(split, lm=lm)
    fewshot = get_model("llm-fewshot", n_history=HISTORY_LEN).fit(split, lm=lm)
    lister = get_model("llm-zeroshot", list_candidates=True, n_history=LISTED_HISTORY).fit(split, lm=lm)
    n = len(task.users)

    def score(condition: str, k: int) -> np.ndarray:
        history, candidates, user = task.history[k], task.candidates[k], int(task.users[k])
        if condition == "own":
            return zeroshot.score_user(history, candidates)
        if condition == "other_history":
            return zeroshot.score_user(task.history[(k + 1) % n], candidates)
        if condition == "no_history":
            return zeroshot.neutral_scores(candidates)
        if condition == "fewshot":
            return fewshot.score_user(history, candidates, user)
        moved = listed(candidates, int(task.targets[k]), 0 if condition == "listed_first" else len(candidates) - 1)
        return lister.score_user(history, moved)

    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record.update({
        "about": __doc__.split("\n\n")[0],
        "protocol": {"split": "ml-100k loo", "seed": args.seed, "stage": "test", "history_len": HISTORY_LEN,
                     "listed_history": LISTED_HISTORY, "candidates": int(task.n_candidates)},
        "llm": lm.name, "users": task.users.tolist(), "targets": task.targets.tolist(),
        "candidates": task.candidates.tolist(),
        "machine": provenance.machine(),
        "commit": provenance.commit(ROOT), "updated": provenance.stamp(),
    })
    record.setdefault("scores", {})
    record.setdefault("cpu_seconds", {})

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, separators=(",", ":")) + "\n")

    # users in chunks of 10, every condition per chunk: a run cut short has every condition on the same users
    for stop in range(10, n + 10, 10):
        stop = min(stop, n)
        for condition in args.conditions:
            rows = record["scores"].setdefault(condition, [])
            start = time.process_time()
            for k in range(len(rows), stop):
                rows.append([round(float(v), 5) for v in score(condition, k)])
            record["cpu_seconds"][condition] = round(record["cpu_seconds"].get(condition, 0.0)
                                                     + time.process_time() - start, 1)
        save()
        print(f"{stop}/{n} users: " + ", ".join(f"{c} {record['cpu_seconds'][c]:.0f} CPU-s" for c in args.conditions),
              flush=True)


if __name__ == "__main__":
    main()
