"""LLaRA (titles plus SASRec embeddings as soft tokens) on the 200 llmrank users, every candidate set.

Fits one SASRec (``max_seq_len`` = the history cap, training split, early stopping on
validation) and the LLaRA variants that read its item embeddings (``hybrid``; ablations
``titles`` and ``frozen`` with ``--modes``), scores the test users of the three candidate
sets of ``benchmarks/llmrank_candidates.py`` (uniform, popularity-matched, retrieved by BPR)
from one forward pass per user (the catalogue's next-item logits, gathered per set), and
tests each variant against P5 with item tokens, SASRec, BPR and Pop with paired t-tests on
per-user NDCG@10, Holm-adjusted within each candidate set. The baselines' per-user values
are read from ``genrec_lib/records/llmrank_candidates.json`` (same users, same order) when
that record has them; this run's own SASRec is recorded beside them.

Records ``genrec_lib/records/llmrank_hybrid.json`` after every (variant, set), with CPU
seconds (the machine is shared: wall times mean little), training tokens per CPU-second
and users scored per CPU-second. Run (one thread)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/llmrank_hybrid.py [--modes hybrid titles frozen] [--examples 100]

The recorded hybrid used 100 training sequences (the default); the ablations (about 315 CPU s
each: training plus scoring the 200 users) run with ``--modes titles frozen``. ``--modes``
with no name records only the protocol, Pop and the first stage's rank of each target.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import provenance  # benchmarks/provenance.py: commit, machine and versions of a run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "genrec_lib" / "records" / "llmrank_hybrid.json"
SETS = ("uniform", "popularity", "retrieved")
#: baselines read from the candidate-set record (model keys there)
BASELINES = ("llm-p5", "sasrec", "bpr", "pop")


def cpu() -> float:
    return time.process_time()


def tests_against(record: dict, baselines: dict) -> dict:
    """Per set: every LLaRA variant against every baseline, paired t-tests Holm-adjusted within the set."""
    from genrec_lib.evaluation.stats import holm, paired_test

    out = {}
    for kind, rows in record["results"].items():
        refs = {**baselines.get(kind, {}), **{k: v for k, v in rows.items() if not k.startswith("llm-llara")}}
        pairs = [(name, ref) for name in rows if name.startswith("llm-llara") for ref in refs]
        pvals = [paired_test(rows[a]["ndcg@10"], refs[b]["ndcg@10"]) for a, b in pairs]
        adjusted = holm(pvals) if pvals else []
        out[kind] = {f"{a} vs {b}": {"lift": round(float(np.mean(rows[a]["ndcg@10"]) - np.mean(refs[b]["ndcg@10"])), 4),
                                     "p_holm": float(f"{p:.3g}"), "n": len(rows[a]["ndcg@10"])}
                     for (a, b), p in zip(pairs, adjusted)}
    return out


def first_stage_ranks(first_stage, split, task) -> list[int]:
    """Rank of each target among the user's unseen items under the first stage (1 = top), as llmrank_candidates records it."""
    import torch

    from genrec_lib.evaluation.llmrank import _masked_scores_of

    full = _masked_scores_of(first_stage, split, "test", task.users)
    rows, cols = split.dataset.csr()[task.users].nonzero()
    target = full[torch.arange(len(task.users)), torch.from_numpy(task.targets)].clone()
    full[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")  # seen items (the target too) drop out
    return (1 + (full > target[:, None]).sum(1)).tolist()


def cascade(record: dict, baselines: dict) -> dict:
    """The retrieved set read as a cascade (``llmrank_candidates.cascade_tests``) with this record's rows and BPR's."""
    from llmrank_candidates import FIRST_STAGE, cascade_tests

    rows = {k: v for k, v in record["results"].get("retrieved", {}).items() if k.startswith("llm-llara")}
    first = baselines.get("retrieved", {}).get(f"{FIRST_STAGE} (candidates record)")
    ranks = record["protocol"].get("first_stage_target_rank")
    if not rows or first is None or ranks is None:
        return {}
    return cascade_tests({"sets": {"retrieved": {"first_stage_target_rank": ranks}},
                          "results": {"retrieved": {FIRST_STAGE: first, **rows}}})


def main(argv=None) -> None:
    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import candidate_metrics, candidate_scores, make_llmrank_task
    from genrec_lib.models import get_model
    from genrec_lib.models.llm.lm import load_lm
    from genrec_lib.models.sasrec import SASRec
    from genrec_lib.results import benchmark_record
    from genrec_lib.training import seed_everything

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="*", default=["hybrid"], choices=["hybrid", "titles", "frozen"],
                        help="LLaRA variants to train; none: only the protocol, Pop and the cascade view")
    parser.add_argument("--examples", type=int, default=100, help="training sequences (users), as recorded")
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    split = load_split("ml-100k", "loo", args.seed)
    seed_everything(args.seed)
    start = cpu()
    bpr = get_model("bpr").fit(split)
    bpr_s = cpu() - start
    tasks = {kind: make_llmrank_task(split, "test", history_len=args.history, seed=args.seed, candidates=kind,
                                     first_stage=bpr if kind == "retrieved" else None) for kind in SETS}
    users = tasks["uniform"].users
    for task in tasks.values():  # one set of users, targets and histories
        assert np.array_equal(task.users, users) and np.array_equal(task.targets, tasks["uniform"].targets)

    baselines, reference = {}, {}
    try:
        reference = benchmark_record("llmrank_candidates")
    except FileNotFoundError:
        pass
    if reference and reference.get("protocol", {}).get("users") == users.tolist():
        for kind in SETS:
            rows = reference.get("results", {}).get(kind, {})
            baselines[kind] = {f"{k} (candidates record)": rows[k] for k in BASELINES if k in rows}
            if kind in reference.get("sets", {}):
                assert reference["sets"][kind]["targets"] == tasks[kind].targets.tolist(), kind

    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for key in ("runs", "results", "throughput", "tests"):
        record.setdefault(key, {})
    stamp = provenance.stamp()
    record["runs"][stamp] = {
        "machine": provenance.machine("(machine shared with other jobs: times are CPU seconds of this process)"),
        "versions": provenance.versions("transformers", "peft", "numpy"),
        "commit": provenance.commit(ROOT), "seed": args.seed, "modes": args.modes, "examples": args.examples,
    }
    record["protocol"] = {"dataset": "ml-100k", "split": "loo", "seed": args.seed, "stage": "test",
                          "users": users.tolist(), "history_len": args.history, "candidates": int(tasks["uniform"].n_candidates),
                          "first_stage": {"model": "bpr", "fit_cpu_seconds": round(bpr_s, 1)},
                          "targets": {k: t.targets.tolist() for k, t in tasks.items()},
                          "baselines": "per-user NDCG@10 of llm-p5, sasrec, bpr and pop from the llmrank_candidates "
                                       "record (same users and order), plus this run's own SASRec and Pop",
                          "tests": "paired t-tests over the users on per-user NDCG@10, Holm-adjusted within each set",
                          "first_stage_target_rank": first_stage_ranks(bpr, split, tasks["retrieved"])}

    def save() -> None:
        record["tests"] = tests_against(record, baselines)
        record["cascade"] = cascade(record, baselines)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(args.out)

    def put(kind: str, key: str, settings: dict, fit_s: float, score_s: float, scores) -> None:
        result = candidate_metrics(scores, tasks[kind])
        record["results"].setdefault(kind, {})[key] = {
            "settings": settings, "run": stamp, "fit_cpu_seconds": round(fit_s, 1), "score_cpu_seconds": round(score_s, 1),
            "metrics": {k: round(float(v), 4) for k, v in result.metrics.items() if k != "rank"},
            "ndcg@10": [round(float(v), 6) for v in result.per_user["ndcg@10"]]}
        print(f"test {kind:10s} {key:20s} NDCG@10 {result.metrics['ndcg@10']:.3f}", flush=True)
        save()

    pop = get_model("pop").fit(split)
    for kind, task in tasks.items():
        put(kind, "pop", {}, 0.0, 0.0, candidate_scores(pop, task).numpy())
    if not args.modes:
        save()
        return
    seed_everything(args.seed)
    start = cpu()
    sasrec = SASRec(max_seq_len=args.history, seed=args.seed).fit(split)
    sasrec_s = cpu() - start
    for kind, task in tasks.items():
        put(kind, "sasrec", {"max_seq_len": args.history}, sasrec_s, 0.0, candidate_scores(sasrec, task).numpy())

    lm = load_lm(device="cpu")
    for mode in args.modes:
        settings = {"mode": mode, "n_examples": args.examples, "n_history": args.history}
        seed_everything(args.seed)
        start = cpu()
        model = get_model("llm-llara", **settings).fit(split, lm=lm, sasrec=sasrec)
        fit_s = cpu() - start
        start = cpu()
        logits = model.item_logits(tasks["uniform"].history)  # (U, I): the same histories for every set
        score_s = cpu() - start
        key = f"llm-llara ({mode})"
        record["throughput"][key] = {"train_tokens": model.log_.tokens, "train_cpu_seconds": round(fit_s, 1),
                                     "train_tokens_per_cpu_second": round(model.log_.tokens / fit_s, 1),
                                     "users_scored": len(users), "score_cpu_seconds": round(score_s, 1),
                                     "users_per_cpu_second": round(len(users) / score_s, 3),
                                     "fit_includes": "LoRA + projector training (SASRec fitted once, "
                                                     f"{sasrec_s:.0f} CPU s, not included)"}
        for kind, task in tasks.items():
            scores = logits.gather(1, torch.as_tensor(task.candidates, dtype=torch.long)).numpy()
            put(kind, key, settings, fit_s, score_s, scores)
        del model


if __name__ == "__main__":
    main()
