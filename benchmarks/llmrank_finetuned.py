"""Fine-tuned language models against zero-shot ranking and classic models on all 200 ``llmrank`` users.

Chapter 12 ranks every ``llmrank`` test user with the cheap models (item-token P5 and the
classic ones) in its own run, but scores the text-reading language models (zero-shot,
TALLRec, P5 with titles or IDs) on a few users only: each costs around a CPU-second per user.
This script scores all of them on the same 200 users x 20 candidates as
``genrec bench --protocol llmrank`` and records, per model, its settings, times, metrics and
per-user NDCG@10 (and, for P5's variants, the validation NDCG@10 its defaults were chosen
on), so that paired tests over the 200 users can be computed from the file
(chapter 12 does so). It runs outside CI: about half an hour on 2 CPU cores.

Run (from the repository root)::

    OMP_NUM_THREADS=2 python benchmarks/llmrank_finetuned.py [--models pop bpr ... llm-p5:item_repr=id]

A model is a registered name with optional ``key=value`` overrides after a colon (values
parsed as Python literals when they can be); every run replaces those models' rows in
``genrec_lib/records/llmrank_finetuned.json`` (package data) and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import provenance  # benchmarks/provenance.py: commit, machine and versions of a run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = ("pop", "bpr", "sasrec", "llm-p5", "llm-zeroshot", "llm-p5:item_repr=id", "llm-p5:init=random",
                  "llm-tallrec")
RESULTS = ROOT / "genrec_lib" / "records" / "llmrank_finetuned.json"  # package data: chapters read it via benchmark_record


def parse(spec: str) -> tuple[str, dict]:
    """``"llm-p5:item_repr=id,n_examples=512"`` -> (``"llm-p5"``, ``{"item_repr": "id", "n_examples": 512}``)."""
    from genrec_lib.cli import UsageError, parse_overrides

    name, _, rest = spec.partition(":")
    try:
        return name, parse_overrides([pair for pair in rest.split(",") if pair])
    except UsageError as error:
        raise SystemExit(f"{spec!r}: {error}") from None


def main(argv=None) -> None:
    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import evaluate_llmrank, make_llmrank_task
    from genrec_lib.models import get_model
    from genrec_lib.training import seed_everything

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    split = load_split("ml-100k", "loo", args.seed)
    task = make_llmrank_task(split, "test", seed=args.seed)
    runs = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": {}, "models": {}}
    stamp = provenance.stamp()
    runs["runs"][stamp] = {
        "machine": provenance.machine(),
        "versions": provenance.versions("transformers", "peft", "numpy"),
        "commit": provenance.commit(ROOT), "seed": args.seed, "users": int(len(task.users)), "candidates": int(task.n_candidates),
    }
    for spec in args.models:
        name, overrides = parse(spec)
        seed_everything(args.seed)
        model = get_model(name, **overrides)
        start = time.perf_counter()
        model.fit(split)
        fit_s = time.perf_counter() - start
        result = evaluate_llmrank(model, task)
        # P5's settings are chosen on validation users: record its variants' validation score too
        valid = evaluate_llmrank(model, make_llmrank_task(split, "valid", seed=args.seed)) if name == "llm-p5" else None
        runs["models"][spec] = {
            "model": name, "overrides": overrides, "run": stamp, "fit_seconds": round(fit_s, 1),
            "score_seconds": round(result.seconds, 1), "llm": getattr(model, "model_name", None),
            "metrics": {k: round(v, 4) for k, v in result.metrics.items() if k != "rank"},
            "valid_ndcg@10": None if valid is None else round(valid.metrics["ndcg@10"], 4),
            "users": task.users.tolist(), "ndcg@10": [round(float(v), 6) for v in result.per_user["ndcg@10"]],
        }
        print(f"{spec:28s} NDCG@10 {result.metrics['ndcg@10']:.3f}  fit {fit_s:6.0f} s  score {result.seconds:5.0f} s",
              flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(runs, indent=1) + "\n")  # after every model: a run cut short keeps its rows


if __name__ == "__main__":
    main()
