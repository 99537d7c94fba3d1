"""How much of a sequence each ranker of chapter 12 needs: NDCG@10 at history lengths 5, 10, 20 and 50.

The rankers of ``benchmarks/llmrank_candidates.py`` all read the same history cap (20 items)
there; this script asks what the cap itself does. On the *uniform* candidate set's 200 test
users (:func:`~genrec_lib.evaluation.llmrank.make_llmrank_task` with ``seed=2020``; its users,
targets and candidates do not depend on ``history_len``, which is checked), it scores

- SASRec with ``max_seq_len`` L (L = 5, 10, 20, 50: cheap to train),
- P5 with item tokens, the variant ``llmrank_candidates``'s validation chose
  (``p5_selection``), with ``n_history`` L (training and scoring alike), L = 5, 10, 20, 50
  (training reads the last L items of each of its sequences, every one of them a target, so a larger L also
  means more training targets: the length and the amount of training change together for P5),
- the zero-shot ranker with the last L titles in its prompt, L = 5, 10, 20, 50 (the prompt's cost grows
  with L: about 2.0, 2.5, 2.8 and 4.8 CPU s per user),

and records per-user NDCG@10 of each (model, L). Rows at L = 20 whose settings match the
``llmrank_candidates`` record's (same users, candidates, overrides) are copied from it, with
the run they came from. BPR and Pop read the whole training profile and TALLRec its 8
titles by design: they have no length to vary.

Per model, every pair of lengths is compared with a paired t-test over the 200 users; all
those tests form one family, Holm-adjusted.

The record ``genrec_lib/records/llmrank_history.json`` (package data, read by chapter 12
through :func:`genrec_lib.results.benchmark_record`) is rewritten after every row; raw LLM
scores are cached per chunk of users under ``--cache``, so a run cut short loses little, and
a rerun skips the rows already recorded (``--redo`` to recompute).

Run (from the repository root; one thread)::

    OMP_NUM_THREADS=1 python benchmarks/llmrank_history.py [--models sasrec llm-p5 llm-zeroshot] [--lengths 5 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import provenance  # benchmarks/provenance.py: commit, machine and versions of a run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "genrec_lib" / "records" / "llmrank_history.json"
LENGTHS = {"sasrec": (5, 10, 20, 50), "llm-p5": (5, 10, 20, 50), "llm-zeroshot": (5, 10, 20, 50)}
#: the cells of the (model, length) table left out of the protocol, and why; chapter 12 prints them beside the
#: table, with the CPU time the recorded lengths took (the rows' ``fit_cpu_seconds`` and ``score_cpu_seconds``)
NOT_RUN: dict[str, dict[int, str]] = {}
KIND = "uniform"


def cpu() -> float:
    return time.process_time()


def overrides_of(name: str, length: int, p5_chosen: dict) -> dict:
    """The settings that make ``name`` read the last ``length`` items."""
    if name == "sasrec":
        return {"max_seq_len": length}
    if name == "llm-p5":
        return {**p5_chosen, "n_history": length}
    return {"n_history": length}


def length_tests(results: dict) -> dict:
    """Per model, every pair of lengths: mean difference and paired t-test, Holm-adjusted over all pairs of all models."""
    from genrec_lib.evaluation.stats import holm, paired_test

    keys, pvals, diffs = [], [], []
    for name, rows in results.items():
        lengths = sorted(rows, key=int)
        for a, b in itertools.combinations(lengths, 2):
            x, y = np.asarray(rows[a]["ndcg@10"]), np.asarray(rows[b]["ndcg@10"])
            keys.append((name, a, b))
            pvals.append(paired_test(y, x))
            diffs.append(float(y.mean() - x.mean()))
    adjusted = holm(pvals) if pvals else []
    out: dict = {}
    for (name, a, b), d, p, q in zip(keys, diffs, pvals, adjusted):
        out.setdefault(name, {})[f"{a}->{b}"] = {"diff": round(d, 4), "p": float(f"{p:.3g}"), "p_holm": float(f"{q:.3g}")}
    return out


def main(argv=None) -> None:
    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import candidate_metrics, candidate_scores, make_llmrank_task
    from genrec_lib.models import get_model
    from genrec_lib.results import benchmark_record
    from genrec_lib.training import seed_everything

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from llmrank_candidates import scores_in_chunks

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(LENGTHS), choices=list(LENGTHS))
    parser.add_argument("--lengths", nargs="+", type=int, default=None,
                        help="only these of each model's lengths (default: all of LENGTHS)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/llmrank_history_cache"))
    parser.add_argument("--redo", action="store_true", help="recompute rows already in the record")
    parser.add_argument("--no-reuse", action="store_true", help="compute the L=20 rows instead of copying them")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    split = load_split("ml-100k", "loo", args.seed)
    lengths = sorted({n for m in args.models for n in LENGTHS[m]})
    tasks = {n: make_llmrank_task(split, "test", history_len=n, seed=args.seed, candidates=KIND) for n in lengths}
    base = tasks[lengths[0]]
    for n, task in tasks.items():  # the length changes the histories only
        if not (np.array_equal(task.users, base.users) and np.array_equal(task.candidates, base.candidates)
                and np.array_equal(task.targets, base.targets)):
            raise RuntimeError(f"history_len={n} drew other users, targets or candidates than {lengths[0]}")

    source = benchmark_record("llmrank_candidates")
    if source["protocol"]["users"] != base.users.tolist():
        raise RuntimeError("llmrank_candidates ranks other users; rerun it on this commit first")
    if source["sets"][KIND]["targets"] != base.targets.tolist():
        raise RuntimeError("llmrank_candidates has other uniform targets; rerun it on this commit first")
    p5_chosen = dict(x.split("=") for x in source["p5_selection"]["chosen"].split(",") if x)
    p5_chosen = {k: int(v) if v.isdigit() else v for k, v in p5_chosen.items()}

    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for key in ("runs", "results", "tests"):
        record.setdefault(key, {})
    stamp = provenance.stamp()
    this_run = {  # entered in the record with the first row this run computes
        "machine": provenance.machine("(machine shared with other jobs: times are CPU seconds of this process)"),
        "versions": provenance.versions("transformers", "peft", "numpy"),
        "commit": provenance.commit(ROOT, ("genrec_lib", "benchmarks/llmrank_history.py")), "seed": args.seed,
    }
    record["protocol"] = {
        "dataset": "ml-100k", "split": "loo", "seed": args.seed, "stage": "test", "candidates": KIND,
        "users": base.users.tolist(), "targets": base.targets.tolist(),
        "candidates_checksum": int(np.asarray(base.candidates, dtype=np.int64).sum() % 1_000_003),
        "lengths": {m: list(LENGTHS[m]) for m in LENGTHS},
        "not_run": {m: {str(n): why for n, why in rows.items() if n not in LENGTHS[m]} for m, rows in NOT_RUN.items()},
        "p5_variant": p5_chosen,
        "not_varied": {"bpr": "whole training profile", "pop": "whole training profile",
                       "llm-tallrec": "last 8 items (its recorded settings)"},
        "tests": "per model, every pair of lengths: paired t-test over the 200 users on per-user NDCG@10; "
                 "one family over all models and pairs, Holm-adjusted",
    }

    def save() -> None:
        record["tests"] = length_tests(record["results"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(args.out)

    def put(name: str, n: int, overrides: dict, fit_s: float, score_s: float, scores) -> None:
        result = candidate_metrics(scores, tasks[n])
        record["runs"][stamp] = this_run
        record["results"].setdefault(name, {})[str(n)] = {
            "overrides": overrides, "run": stamp, "fit_cpu_seconds": round(fit_s, 1), "score_cpu_seconds": round(score_s, 1),
            "metrics": {k: round(float(v), 4) for k, v in result.metrics.items() if k != "rank"},
            "ndcg@10": [round(float(v), 6) for v in result.per_user["ndcg@10"]],
        }
        print(f"{name:14s} L={n:3d} NDCG@10 {result.metrics['ndcg@10']:.3f}  (fit {fit_s:.0f} CPU-s, score {score_s:.0f} CPU-s)",
              flush=True)
        save()

    save()
    for name in args.models:
        for n in LENGTHS[name]:
            if args.lengths is not None and n not in args.lengths:
                continue
            if not args.redo and str(n) in record["results"].get(name, {}):
                continue
            overrides = overrides_of(name, n, p5_chosen)
            old = source["results"][KIND].get(name)
            if (n == source["protocol"]["history_len"] and not args.no_reuse and old is not None
                    and old["overrides"] == overrides and source["sets"][KIND]["candidates_checksum"]
                    == record["protocol"]["candidates_checksum"]):
                record["results"].setdefault(name, {})[str(n)] = {
                    "overrides": overrides, "run": old["run"],
                    "copied_from": f"llmrank_candidates, uniform row {name!r} (run {old['run']}"
                                   + (f"; {old['reused_from']}" if old.get("reused_from") else "") + ")",
                    "fit_cpu_seconds": old.get("fit_cpu_seconds"), "score_cpu_seconds": old.get("score_cpu_seconds"),
                    "metrics": old["metrics"], "ndcg@10": old["ndcg@10"]}
                print(f"{name:14s} L={n:3d} NDCG@10 {np.mean(old['ndcg@10']):.3f}  (copied from llmrank_candidates)", flush=True)
                save()
                continue
            seed_everything(args.seed)
            start = cpu()
            if name == "llm-zeroshot":
                from genrec_lib.models.llm.lm import load_lm

                model = get_model(name, **overrides).fit(split, lm=load_lm())
            else:
                model = get_model(name, **overrides).fit(split)
            fit_s = cpu() - start
            start = cpu()
            if name.startswith("llm-"):
                tag = f"{name}-" + "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
                scores = scores_in_chunks(model, tasks[n], args.cache, tag)
            else:
                scores = candidate_scores(model, tasks[n]).numpy()
            put(name, n, overrides, fit_s, cpu() - start, scores)
            del model
    for name, rows in record["results"].items():
        print(name + ": " + "  ".join(f"L={n} {np.mean(r['ndcg@10']):.3f}" for n, r in rows.items()))


if __name__ == "__main__":
    main()
