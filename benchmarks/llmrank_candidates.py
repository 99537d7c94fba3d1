"""Every ranker of chapters 10 and 12 on three ``llmrank`` candidate sets of the same 200 users.

The uniform candidates of LLMRank's protocol let popularity alone rank well, so a model's
score there says little about what it adds. This script ranks the same 200 test users'
targets among three candidate sets (:func:`~genrec_lib.evaluation.llmrank.make_llmrank_task`):

- ``uniform``: 19 negatives drawn uniformly from the items the user never rated (LLMRank);
- ``popularity``: 19 negatives from the target's training-popularity bin (popularity
  carries no signal; the construction uses the target's popularity, a diagnostic);
- ``retrieved``: the first stage's (BPR, trained on the training split) 19 best unseen
  items plus the target: a reranker must beat the order it was handed.

Every model reads the same history cap where it reads a sequence (``--history``, 20 items:
the prompts of the zero-shot, calibrated and few-shot rankers, P5's item-token history and
SASRec's input window); BPR's user vector and Pop read the whole training profile, and
TALLRec keeps the 8 items its recorded settings use (its training cost grows with them).

P5 (item tokens) has settings to choose: every variant in ``--p5-variants`` is trained and
scored on the *validation* task of each candidate set (only validation is printed while
choosing); the variant with the best mean validation NDCG@10 is frozen and scored on test
once. Every variant's validation score is recorded.

The record ``genrec_lib/records/llmrank_candidates.json`` (package data, read by chapter 12
through :func:`genrec_lib.results.benchmark_record`) holds the machine, package versions,
commit, settings, per-user NDCG@10 of every (candidate set, model), and per set each model's
lift over Pop and over the first stage with Holm-adjusted paired t-tests (one family per
candidate set). It is rewritten after every (candidate set, model), and raw scores are
cached per chunk of users under ``--cache``, so a run cut short loses little; a rerun skips
what is recorded (``--redo`` to recompute).

Run (from the repository root; one thread is enough and shares the machine)::

    OMP_NUM_THREADS=1 python benchmarks/llmrank_candidates.py [--models pop bpr sasrec llm-p5 llm-zeroshot ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import provenance  # benchmarks/provenance.py: commit, machine and versions of a run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETS = ("uniform", "retrieved", "popularity")
DEFAULT_MODELS = ("pop", "bpr", "llm-p5", "sasrec", "llm-zeroshot", "llm-calibrated", "llm-tallrec", "llm-fewshot")
P5_VARIANTS = ("n_examples=300", "n_examples=150")
#: rows of the uniform set already measured with these very settings on the same task by
#: ``benchmarks/llmrank_finetuned.py`` (the uniform task is unchanged): copied, with their provenance
REUSE_UNIFORM = {"llm-zeroshot": "llm-zeroshot", "llm-tallrec": "llm-tallrec"}
RESULTS = ROOT / "genrec_lib" / "records" / "llmrank_candidates.json"
FIRST_STAGE = "bpr"


def cpu() -> float:
    return time.process_time()


def settings_of(name: str, history: int) -> tuple[dict, str]:
    """Overrides that give ``name`` the shared history cap, and what the model reads."""
    if name in ("llm-zeroshot", "llm-calibrated", "llm-fewshot"):
        return {"n_history": history}, f"last {history} items (titles in the prompt)"
    if name == "llm-p5":
        return {"n_history": history}, f"last {history} items (item tokens)"
    if name == "sasrec":
        return {"max_seq_len": history}, f"last {history} items"
    if name == "llm-tallrec":
        return {}, "last 8 items (titles, liked/disliked; its recorded settings)"
    return {}, "whole training profile" if name in ("bpr", "pop") else "?"


def scores_in_chunks(model, task, cache: Path, tag: str, chunk: int = 25, computed: list | None = None) -> np.ndarray:
    """``candidate_scores`` over ``task``'s users in chunks, each chunk saved as it finishes.

    ``computed``, if given, receives the number of users scored by this call (the rest were
    read from the cache, written by an earlier run), so the CPU time recorded can say what it covers."""
    from genrec_lib.evaluation.llmrank import candidate_scores

    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    for first in range(0, len(task.users), chunk):
        rows = np.arange(first, min(first + chunk, len(task.users)))
        file = cache / f"{tag}__{first:04d}.npy"
        if file.is_file():
            part = np.load(file)
        else:
            part = candidate_scores(model, task.subset(rows)).numpy()
            np.save(file, part)
            if computed is not None:
                computed.append(len(rows))
        parts.append(part)
    return np.concatenate(parts)


def _common(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two rows' per-user values on the users both have (a row run with ``--first n`` holds the first n)."""
    n = min(len(a), len(b))
    return np.asarray(a[:n], dtype=float), np.asarray(b[:n], dtype=float)


def paired_tests(results: dict, reference_first: str) -> dict:
    """Per model: lift over Pop and over the first stage, with Holm-adjusted paired t-tests (one family per set).

    A row with fewer users (``--first n``) is compared on those users only, and its lift is
    the mean difference on them (``n`` is recorded beside it)."""
    from genrec_lib.evaluation.stats import holm, paired_test

    out = {}
    for kind, rows in results.items():
        if "pop" not in rows:
            continue
        names, pvals = [], []
        for name, row in rows.items():
            for ref in ("pop", reference_first):
                if name != ref and ref in rows:
                    names.append((name, ref))
                    pvals.append(paired_test(*_common(row["ndcg@10"], rows[ref]["ndcg@10"])))
        adjusted = dict(zip(names, holm(pvals))) if pvals else {}
        out[kind] = {}
        for name, row in rows.items():
            entry = {}
            for ref, label in (("pop", "pop"), (reference_first, "first_stage")):
                if ref in rows and name != ref:
                    a, b = _common(row["ndcg@10"], rows[ref]["ndcg@10"])
                    entry[f"lift_over_{label}"] = round(float(np.mean(a - b)), 4)
                    entry[f"n_{label}"] = int(len(a))
                    entry[f"p_vs_{label}_holm"] = float(f"{adjusted[(name, ref)]:.3g}")
            if "lift_over_first_stage" in entry:
                entry["beats_first_stage"] = bool(entry["lift_over_first_stage"] > 0 and entry["p_vs_first_stage_holm"] < 0.05)
            out[kind][name] = entry
    return out


def cascade_tests(record: dict, top: int = 20) -> dict:
    """The retrieved set read as a two-stage cascade: only users whose target the first stage retrieved count.

    The retrieved candidates are the first stage's 19 best unseen items plus the target,
    added whether or not the first stage found it. When the first stage ranked the target
    below its 20th unseen item, its own order puts the target last among the candidates by
    construction, so on the whole set the first stage sits below chance and any reranker
    "beats" it. A deployed cascade hands the reranker the first stage's top ``top`` (20)
    unseen items; when the target is among them (the first stage's rank of the target
    among the user's unseen items is at most ``top``) that list is exactly this candidate
    set, and otherwise no reranker can recover it (NDCG 0 for every model). So the
    comparison with the first stage is made on the users it retrieved (``n`` below, a
    small sample: exact sign tests, Holm-adjusted over the models), and the end-to-end
    NDCG@10 of the cascade over all users is the conditional mean times ``n / U``.
    """
    from genrec_lib.evaluation.stats import holm, paired_test

    entry = record.get("sets", {}).get("retrieved", {})
    rows = record.get("results", {}).get("retrieved", {})
    if "first_stage_target_rank" not in entry or FIRST_STAGE not in rows:
        return {}
    inside = np.asarray(entry["first_stage_target_rank"]) <= top
    first = np.asarray(rows[FIRST_STAGE]["ndcg@10"])[inside]
    names = [n for n in rows if n != FIRST_STAGE]
    def on_inside(values):  # a row run with --first n: its first n users
        values = np.asarray(values, dtype=float)
        keep = inside[: len(values)]
        return values[keep], first[: int(keep.sum())]

    pvals = [paired_test(*on_inside(rows[n]["ndcg@10"]), method="sign") for n in names]
    adjusted = dict(zip(names, holm(pvals))) if pvals else {}
    out = {"top": top, "n_retrieved": int(inside.sum()), "n_users": int(inside.size),
           "test": "exact two-sided sign test on the retrieved users against the first stage, Holm-adjusted over models",
           "models": {}}
    for name, row in rows.items():
        ndcg = np.asarray(row["ndcg@10"])
        keep = inside[: len(ndcg)]
        item = {"n_users": int(len(ndcg)), "n_retrieved": int(keep.sum()),
                "ndcg@10_retrieved_users": round(float(ndcg[keep].mean()), 4),
                "ndcg@10_end_to_end": round(float(np.where(keep, ndcg, 0.0).mean()), 4)}
        if name != FIRST_STAGE:
            mine, theirs = on_inside(ndcg)
            diff = mine - theirs
            item.update(wins=int((diff > 0).sum()), losses=int((diff < 0).sum()),
                        p_vs_first_stage_holm=float(f"{adjusted[name]:.3g}"))
        out["models"][name] = item
    return out


def merge(out: Path, parts: list[Path]) -> None:
    """Merge records written by runs in parallel (each with its own ``--out``) into ``out``.

    A row present in several records is taken from the one whose run is newest; two runs
    must agree on the protocol (same users) and on each candidate set they share.
    """
    record = json.loads(out.read_text())
    for part in parts:
        other = json.loads(part.read_text())
        if other["protocol"]["users"] != record["protocol"]["users"]:
            raise ValueError(f"{part} ranks other users than {out}; merge only runs of the same protocol")
        for kind, entry in other.get("sets", {}).items():
            mine = record["sets"].get(kind)
            if mine is not None and mine["candidates_checksum"] != entry["candidates_checksum"]:
                raise ValueError(f"{part}'s {kind} candidates differ from {out}'s; rerun it on the same commit")
            record["sets"][kind] = {**(mine or {}), **entry}  # a part from an older run may lack newer fields
        record["runs"].update(other.get("runs", {}))
        for kind, rows in other.get("results", {}).items():
            for name, row in rows.items():
                old = record["results"].setdefault(kind, {}).get(name)
                if old is None or str(row.get("run")) >= str(old.get("run")):
                    record["results"][kind][name] = row
        if other.get("p5_selection"):
            record["p5_selection"] = other["p5_selection"]
    record["tests"] = paired_tests(record["results"], FIRST_STAGE)
    record["cascade"] = cascade_tests(record)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"merged {len(parts)} record(s) into {out}")


def main(argv=None) -> None:
    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import candidate_metrics, make_llmrank_task
    from genrec_lib.models import get_model
    from genrec_lib.training import seed_everything

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--p5-variants", nargs="+", default=list(P5_VARIANTS))
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/llmrank_candidates_cache"))
    parser.add_argument("--redo", action="store_true", help="recompute rows already in the record")
    parser.add_argument("--first", type=int, default=None, metavar="N",
                        help="score only the first N of the 200 test users (ascending user id, a seeded random "
                             "sample like the 200) for the models named here: for the costliest rankers")
    parser.add_argument("--no-reuse", action="store_true",
                        help="compute the uniform rows that would otherwise be copied from llmrank_finetuned")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="PART",
                        help="add the runs, sets and rows of these records (each written by a run with its own --out) "
                             "to --out, recompute the tests, and stop")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.out, args.merge)
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    split = load_split("ml-100k", "loo", args.seed)
    seed_everything(args.seed)
    start = cpu()
    needs_first = "retrieved" in args.sets or FIRST_STAGE in args.models
    first_stage = get_model(FIRST_STAGE).fit(split) if needs_first else None  # deterministic: seeded, one thread
    first_fit = cpu() - start
    tasks = {(stage, kind): make_llmrank_task(split, stage, history_len=args.history, seed=args.seed, candidates=kind,
                                             first_stage=first_stage if kind == "retrieved" else None)
             for stage in ("valid", "test") for kind in args.sets}
    task0 = tasks[("test", args.sets[0])]

    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for key in ("runs", "sets", "results", "p5_selection", "tests"):
        record.setdefault(key, {})
    stamp = provenance.stamp()
    record["runs"][stamp] = {
        "machine": provenance.machine("(machine shared with other jobs: times are CPU seconds of this process)"),
        "versions": provenance.versions("transformers", "peft", "numpy"),
        "commit": provenance.commit(ROOT, ("genrec_lib", "benchmarks/llmrank_candidates.py")), "seed": args.seed,
    }
    previous = record.get("protocol", {})
    record["protocol"] = {
        "dataset": "ml-100k", "split": "loo", "seed": args.seed, "stage": "test", "users": task0.users.tolist(),
        "candidates": int(task0.n_candidates), "history_len": args.history,
        "first_stage": {"model": FIRST_STAGE, "settings": tasks[("test", "retrieved")].provenance["first_stage_settings"],
                        "fit_cpu_seconds": round(first_fit, 1)} if "retrieved" in args.sets else previous.get("first_stage"),
        "tests": "paired t-tests over the 200 users on per-user NDCG@10, Holm-adjusted within each candidate set "
                 "(every model against Pop and against the first stage)",
    }
    for kind in args.sets:
        task = tasks[("test", kind)]
        record["sets"][kind] = {"provenance": task.provenance, "targets": task.targets.tolist(),
                                "candidates_checksum": int(np.asarray(task.candidates, dtype=np.int64).sum() % 1_000_003)}
    if "retrieved" in args.sets:  # where the first stage ranked each target among the user's unseen items
        from genrec_lib.evaluation.llmrank import _masked_scores_of

        task = tasks[("test", "retrieved")]
        full = _masked_scores_of(first_stage, split, "test", task.users)
        seen = split.dataset.csr()[task.users]
        rows_, cols_ = seen.nonzero()
        target_score = full[torch.arange(len(task.users)), torch.from_numpy(task.targets)].clone()
        full[torch.from_numpy(rows_), torch.from_numpy(cols_)] = float("-inf")  # the target is seen too: scored above
        record["sets"]["retrieved"]["first_stage_target_rank"] = (1 + (full > target_score[:, None]).sum(1)).tolist()

    def save() -> None:
        record["tests"] = paired_tests(record["results"], FIRST_STAGE)
        record["cascade"] = cascade_tests(record)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(args.out)

    def put(kind: str, key: str, name: str, overrides: dict, reads: str, fit_s: float, scores, task, extra=None):
        result = candidate_metrics(scores, task)
        record["results"].setdefault(kind, {})[key] = {
            "model": name, "overrides": overrides, "history": reads, "run": stamp, "n_users": int(len(task.users)),
            **({"users_subset": f"the first {len(task.users)} of the protocol's users (ascending id)"}
               if len(task.users) < len(task0.users) else {}),
            "fit_cpu_seconds": round(fit_s, 1),
            "score_cpu_seconds": round(extra.get("score_s", 0.0), 1) if extra else 0.0,
            **({"score_cpu_users": extra["score_users"]} if extra and "score_users" in extra else {}),
            "metrics": {k: round(float(v), 4) for k, v in result.metrics.items() if k != "rank"},
            "ndcg@10": [round(float(v), 6) for v in result.per_user["ndcg@10"]],
        }
        print(f"test {kind:10s} {key:16s} NDCG@10 {result.metrics['ndcg@10']:.3f}", flush=True)
        save()

    def done(kind: str, key: str) -> bool:
        return not args.redo and key in record["results"].get(kind, {})

    save()
    for name in args.models:
        overrides, reads = settings_of(name, args.history)
        if name == "llm-p5":
            todo = [k for k in args.sets if not done(k, name)]
            if not todo:
                continue
            valid = {}
            fitted = {}
            for variant in args.p5_variants:
                from genrec_lib.cli import parse_overrides

                settings = {**overrides, **parse_overrides([p for p in variant.split(",") if p])}
                seed_everything(args.seed)
                start = cpu()
                model = get_model(name, **settings).fit(split)
                fit_s = cpu() - start
                valid[variant] = {k: round(float(candidate_metrics(scores_in_chunks(
                    model, tasks[("valid", k)], args.cache, f"valid-{k}-p5-{variant}"), tasks[("valid", k)])["ndcg@10"]), 4)
                    for k in args.sets}
                print(f"valid P5 {variant:24s} " + "  ".join(f"{k} {v:.3f}" for k, v in valid[variant].items()), flush=True)
                fitted[variant] = (model, settings, fit_s)
            chosen = max(valid, key=lambda v: np.mean(list(valid[v].values())))
            record["p5_selection"] = {"variants": valid, "chosen": chosen, "shared": overrides,
                                      "criterion": "best mean validation NDCG@10 over the candidate sets "
                                                   "(validation users of the same seed; test scored once, after)"}
            model, settings, fit_s = fitted.pop(chosen)
            fitted.clear()
            for kind in todo:
                start = cpu()
                scores = scores_in_chunks(model, tasks[("test", kind)], args.cache, f"test-{kind}-p5-{chosen}")
                put(kind, name, name, settings, reads, fit_s, scores, tasks[("test", kind)], {"score_s": cpu() - start})
            del model
            continue
        if name in REUSE_UNIFORM and "uniform" in args.sets and not done("uniform", name) and not args.no_reuse:
            from genrec_lib.results import benchmark_record

            old = benchmark_record("llmrank_finetuned")
            row = old["models"].get(REUSE_UNIFORM[name])
            if row is not None and row["users"] == task0.users.tolist() and not row["overrides"]:
                run = old["runs"][row["run"]]
                record["results"].setdefault("uniform", {})[name] = {
                    "model": name, "overrides": overrides, "history": reads, "run": row["run"],
                    "reused_from": f"llmrank_finetuned ({row['run']}, commit {run['commit']}; {run['machine']})",
                    "fit_cpu_seconds": None, "fit_wall_seconds": row["fit_seconds"], "score_cpu_seconds": None,
                    "score_wall_seconds": row["score_seconds"],
                    "metrics": {k: row["metrics"][k] for k in ("ndcg@10", "hit@1", "hit@5", "hit@10", "mrr")},
                    "ndcg@10": row["ndcg@10"]}
                print(f"test uniform    {name:16s} NDCG@10 {np.mean(row['ndcg@10']):.3f} (recorded by llmrank_finetuned)")
                save()
        todo = [k for k in args.sets if not done(k, name)]
        if name == "llm-calibrated":  # derived from the zero-shot scores: only where those are cached
            todo = [k for k in todo if all((args.cache / f"test-{k}-llm-zeroshot__{f:04d}.npy").is_file()
                                           for f in range(0, len(task0.users), 25))]
        if not todo:
            continue
        seed_everything(args.seed)
        start = cpu()
        if name == FIRST_STAGE:
            model, fit_s = first_stage, first_fit
        elif name.startswith("llm-") and name != "llm-tallrec":
            from genrec_lib.models.llm.lm import load_lm

            model = get_model(name, **overrides).fit(split, lm=load_lm())
            fit_s = cpu() - start
        else:
            model = get_model(name, **overrides).fit(split)
            fit_s = cpu() - start
        for kind in todo:
            task = tasks[("test", kind)]
            if args.first is not None:
                task = task.subset(np.arange(min(args.first, len(task.users))))
            start = cpu()
            if name == "llm-calibrated" and all(os.path.exists(args.cache / f"test-{kind}-llm-zeroshot__{f:04d}.npy")
                                                for f in range(0, len(task.users), 25)):
                # the calibrated score is the zero-shot score minus the title's no-history score (same prompt template)
                zero = scores_in_chunks(None, task, args.cache, f"test-{kind}-llm-zeroshot")
                model.neutral_scores(np.unique(task.candidates))  # every title once, in batches
                scores = zero - np.stack([model.neutral_scores(row) for row in task.candidates])
            elif name.startswith("llm-"):
                computed: list = []
                scores = scores_in_chunks(model, task, args.cache, f"test-{kind}-{name}", computed=computed)
            else:
                from genrec_lib.evaluation.llmrank import candidate_scores

                scores = candidate_scores(model, task).numpy()
            extra = {"score_s": cpu() - start}
            if name.startswith("llm-") and name != "llm-calibrated":  # users scored here; the others came from the cache
                extra["score_users"] = int(sum(computed))
            put(kind, name, name, overrides, reads, fit_s, scores, task, extra)
        del model
    for kind in args.sets:
        rows = record["results"].get(kind, {})
        line = "  ".join(f"{k} {np.mean(v['ndcg@10']):.3f}" for k, v in rows.items())
        print(f"{kind}: {line}")


if __name__ == "__main__":
    main()
