"""An LLM ranker told a user's gender or age: the scores behind chapter 17's fairness section.

FaiRLLM (Zhang et al., RecSys 2023) compares the list an LLM recommends from a neutral
prompt with the lists it recommends when the prompt states a sensitive attribute. This
script scores the ``llmrank`` test candidates of the first ``--users`` of its 200 seeded
users with the zero-shot likelihood ranker (SmolLM2, shared prompt cache) under the
neutral prompt and under one prompt per value of each chosen attribute in
:data:`genrec_lib.risks.fairness.STATEMENTS` (``--attributes``; gender: 2 values, the
default, so three prompts per user; age: 4 bands), and records every score. Chapter 17 computes the lists, FaiRLLM's
similarities, the paired tests and the mitigation from this record, and re-scores its first
users itself to check that the record matches its own run.

It runs outside CI (about 2.6 CPU-seconds per prompt with one thread), saving after every
few users, so an interrupted run keeps what it scored and a rerun resumes. Rows of the task
can be split between processes (``--rows``, ``--out``) and the parts joined (``--merge``)::

    OMP_NUM_THREADS=1 python benchmarks/llm_fairness.py [--rows 0 120] [--attributes gender]
    OMP_NUM_THREADS=1 python benchmarks/llm_fairness.py --rows 0 60 --out part0.json &
    OMP_NUM_THREADS=1 python benchmarks/llm_fairness.py --rows 60 120 --out part1.json &
    python benchmarks/llm_fairness.py --merge part0.json part1.json

Output: ``genrec_lib/records/llm_fairness.json`` (package data; chapters read it through
:func:`genrec_lib.results.benchmark_record`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORD = ROOT / "genrec_lib" / "records" / "llm_fairness.json"

#: what the record was made with; the chapter builds the same task and ranker from these
SETTINGS = {"dataset": "ml-100k", "protocol": "loo", "seed": 2020, "stage": "test", "task_users": 200,
            "n_candidates": 20, "n_history": 10, "scoring": "likelihood", "reduce": "sum"}


def prompts_of(attributes) -> dict:
    """``{prompt name: statement}`` for one user: the neutral prompt and every attribute value's."""
    from genrec_lib.risks.fairness import STATEMENTS

    out = {"neutral": ""}
    for attribute in attributes:
        for value, sentence in STATEMENTS[attribute].items():
            out[f"{attribute}={value}"] = sentence
    return out


def main(argv=None) -> None:
    import numpy as np
    import torch

    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import make_llmrank_task
    from genrec_lib.risks.fairness import STATEMENTS, StatedAttributeRanker, user_groups

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs=2, default=(0, 120), metavar=("START", "STOP"),
                        help="score the task's users START..STOP-1 (of 200, in the task's order)")
    parser.add_argument("--attributes", nargs="+", default=["gender"], choices=sorted(STATEMENTS))
    parser.add_argument("--out", type=Path, default=RECORD)
    parser.add_argument("--merge", type=Path, nargs="+", help="join these part files into the record and stop")
    parser.add_argument("--save-every", type=int, default=5)
    args = parser.parse_args(argv)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        if any(p["settings"] != parts[0]["settings"] for p in parts):
            raise SystemExit("the parts were made with different settings; rerun them with the same ones")
        by_row = {}
        for part in parts:                 # a row scored by two parts keeps the first part's scores
            for r in part["users"]:
                by_row.setdefault(r["row"], r)
        merged = dict(parts[0], users=[by_row[k] for k in sorted(by_row)],
                      last_cpu_seconds=sum(p["last_cpu_seconds"] for p in parts), parts=len(parts))
        RECORD.write_text(json.dumps(merged, indent=1))
        print(f"{len(merged['users'])} users -> {RECORD}")
        return
    torch.set_num_threads(1)
    s = dict(SETTINGS, attributes=list(args.attributes))
    split = load_split(s["dataset"], s["protocol"], s["seed"])
    task = make_llmrank_task(split, s["stage"], n_users=s["task_users"], n_candidates=s["n_candidates"], seed=s["seed"])
    ranker = StatedAttributeRanker(scoring=s["scoring"], reduce=s["reduce"], n_history=s["n_history"]).fit(split)
    groups = {a: user_groups(split, a) for a in STATEMENTS}
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    if record.get("settings") != s:
        record = {"settings": s, "model": ranker.model_name, "statements": prompts_of(args.attributes), "users": []}
    done = {row["user"] for row in record["users"]}
    start, cpu = time.perf_counter(), time.process_time()
    stop = min(args.rows[1], len(task.users))
    for row in range(args.rows[0], stop):
        user = int(task.users[row])
        if user in done:
            continue
        one = task.subset([row])
        scores = {}
        for name, said in prompts_of(args.attributes).items():
            scores[name] = [round(float(x), 4) for x in ranker.score_with_statements(one, [said])[0]]
        record["users"].append({"row": row, "user": user, "candidates": task.candidates[row].tolist(),
                                "target": int(task.targets[row]),
                                **{a: str(groups[a][user]) for a in groups}, "scores": scores})
        if len(record["users"]) % args.save_every == 0 or row == stop - 1:
            record.update(written=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=platform.platform(),
                          threads=torch.get_num_threads(), last_cpu_seconds=round(time.process_time() - cpu, 1),
                          last_wall_seconds=round(time.perf_counter() - start, 1))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=1))
            print(f"{len(record['users'])} users, {time.process_time() - cpu:.0f} CPU-s", flush=True)
    record["users"].sort(key=lambda r: r["row"])
    args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
