"""Ship leaderboard entries with the library: ``genrec_lib/records/leaderboard_entries.json``.

    # the entries the chapters saved in a recorded standalone run (scripts/standalone_check.py --full)
    python scripts/ship_leaderboard_entries.py --standalone build/standalone
    # entries of a `genrec leaderboard` run (GENREC_RESULTS=DIR), at the commit it ran from
    python scripts/ship_leaderboard_entries.py --results DIR --commit 975eac6 --how "genrec leaderboard --protocol llmrank ..."
    # train what no chapter records: one fit on loo gives both its loo and its llmrank entry
    python scripts/ship_leaderboard_entries.py --train loo+llmrank:cfgan,diffrec random:sasrec --set sasrec.epochs=12 \
        --results DIR --source build/standalone/src-<commit>   # then --results DIR --commit <commit> to ship them

Chapter 16 run on its own (from Colab, without the earlier chapters) reads these for every model
it does not train (``leaderboard.collect(..., shipped=True)``), labelled as shipped with the commit
that produced them. Each entry keeps its provenance (library version, code hash, settings), so
the stale check applies to it as to an entry of the same run: this script leaves out (and names)
an entry that is stale against the code of the working tree, and chapter 16 leaves out (and names) one that
has gone stale since. Entries are merged into the record, one per (dataset, protocol, seed,
model); per-user values are kept for NDCG@10 only (what the board's intervals and paired tests use).
A model whose fit refuses the dataset (``ValueError``: VBPR and the joint-space model need item
images, which MovieLens lacks) is shipped under ``cannot_run`` with the error, so that chapter 16
says why it has no row.

``--train`` produces entries the way ``genrec leaderboard`` does (:func:`leaderboard.fit_and_evaluate`:
registered defaults plus ``--set``), with one saving: a model asked for on both ``loo`` and
``llmrank`` is fitted once on the ``loo`` split and evaluated into both entries (``genrec
leaderboard`` fits it once per protocol; the llmrank candidates are drawn from that same split).
``--source`` names the checkout (or ``git archive`` export) whose ``genrec_lib`` trains them, so
that the commit they are shipped with is the code that ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "genrec_lib" / "records" / "leaderboard_entries.json"
STANDALONE = ROOT / "benchmarks" / "standalone.json"
KEEP_PER_USER = ("ndcg@10",)
#: what --train writes for a model whose fit refused the dataset; shipped as the record's ``cannot_run``
CANNOT_RUN = "cannot_run.json"


def read_entries(folder: Path) -> list[dict]:
    """Every ``<dataset>/<protocol>-seed<seed>/<model>.json`` under ``folder``."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/*-seed*/*.json"))]


def slim(entry: dict) -> dict:
    entry = dict(entry)
    entry["per_user"] = {k: v for k, v in entry.get("per_user", {}).items() if k in KEEP_PER_USER}
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--standalone", help="work folder of scripts/standalone_check.py --full (its entries/<chapter>/)")
    source.add_argument("--results", help="a results folder holding leaderboard/ (GENREC_RESULTS of a genrec leaderboard run)")
    parser.add_argument("--commit", help="with --results: the commit the run used")
    parser.add_argument("--how", default="genrec leaderboard", help="with --results: the command that produced the entries")
    parser.add_argument("--machine", default="", help="with --results: the machine and its load")
    parser.add_argument("--out", default=str(RECORD))
    parser.add_argument("--train", nargs="+", metavar="PROTOCOLS:MODELS",
                        help="with --results: train these into DIR/leaderboard first, e.g. loo+llmrank:cfgan,diffrec "
                             "random:sasrec (nothing is shipped; ship them with --results DIR --commit REV)")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="with --train: a model's hyper-parameter, as in genrec leaderboard --set")
    parser.add_argument("--source", default=str(ROOT),
                        help="with --train: the checkout or export whose genrec_lib trains (default: this one)")
    args = parser.parse_args(argv)

    if args.train:
        if not args.results:
            raise SystemExit("--train needs --results DIR: the folder its entries are written to")
        return train(args.train, args.set, Path(args.results), Path(args.source))
    sys.path.insert(0, str(ROOT))
    from genrec_lib.evaluation import leaderboard as lb

    batches = []  # (run id, run, entries)
    refused = {}  # --results: models whose fit refused the dataset
    if args.standalone:
        chapters = json.loads(STANDALONE.read_text())["chapters"]
        for folder in sorted((Path(args.standalone) / "entries").iterdir()):
            row = chapters.get(folder.name)
            if row is None or not row["ok"]:
                raise SystemExit(f"{folder.name}: no passing row in {STANDALONE.relative_to(ROOT)}; rerun it with "
                                 "scripts/standalone_check.py --full before shipping its entries")
            if row["commit"].endswith("+uncommitted"):
                raise SystemExit(f"{folder.name} ran from uncommitted files ({row['commit']}); rerun it with --commit")
            run = {"commit": row["commit"], "date": row["date"], "machine": row["machine"],
                   "how": f"notebooks/{folder.name}.ipynb run standalone (scripts/standalone_check.py --full)"}
            batches.append((f"{folder.name}@{row['commit']}", run, read_entries(folder / "leaderboard")
                            if (folder / "leaderboard").is_dir() else read_entries(folder)))
    else:
        if not args.commit:
            raise SystemExit("--results needs --commit: the commit the leaderboard run used")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        run = {"commit": args.commit, "date": now, "machine": args.machine, "how": args.how}
        batches.append((f"leaderboard@{args.commit}", run, read_entries(Path(args.results) / "leaderboard")))
        note = Path(args.results) / "leaderboard" / CANNOT_RUN
        refused = json.loads(note.read_text()) if note.is_file() else {}

    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {"runs": {}, "entries": []}
    if refused:  # models whose fit refused the dataset: chapter 16 says why they have no row
        run_id = batches[0][0]
        data["runs"][run_id] = batches[0][1]
        for dataset, models in refused.items():
            for model, why in models.items():
                data.setdefault("cannot_run", {}).setdefault(dataset, {})[model] = {**why, "run": run_id}
    data["about"] = ("Leaderboard entries shipped with the library for chapter 16 run on its own; written by "
                     "scripts/ship_leaderboard_entries.py. Each entry names its run (commit, date, machine, how) "
                     "and keeps its provenance for the stale check; per-user values for NDCG@10 only.")
    keyed = {(e["dataset"], e["protocol"], e["seed"], e["model"]): e for e in data["entries"]}
    for run_id, run, entries in batches:
        stale = [f"{e['protocol']}/{e['model']}: {lb.stale_reason(e)}" for e in entries if lb.stale_reason(e)]
        if stale:
            print(f"{run_id}: stale against this checkout's code, not shipped: {'; '.join(stale)}", file=sys.stderr)
        entries = [e for e in entries if not lb.stale_reason(e)]
        if not entries:
            continue
        data["runs"][run_id] = run
        for entry in entries:
            keyed[(entry["dataset"], entry["protocol"], entry["seed"], entry["model"])] = {**slim(entry), "run": run_id}
        print(f"{run_id}: {len(entries)} entries ({', '.join(sorted(e['protocol'] + '/' + e['model'] for e in entries))})")
    used = {e["run"] for e in keyed.values()} | {why["run"] for models in data.get("cannot_run", {}).values()
                                                 for why in models.values()}
    data["runs"] = {k: v for k, v in sorted(data["runs"].items()) if k in used}
    data["entries"] = [keyed[k] for k in sorted(keyed)]
    out.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    print(f"{len(data['entries'])} entries in {out}")
    return 0


def train(specs: list[str], pairs: list[str], results: Path, source: Path) -> int:
    """Fit each model once per split it needs and save its entries under ``results/leaderboard``."""
    import os
    import time

    os.environ["GENREC_RESULTS"] = str(results.resolve())
    sys.path.insert(0, str(source.resolve()))
    import genrec_lib
    from genrec_lib.cli import UsageError, parse_model_overrides
    from genrec_lib.data import load_split
    from genrec_lib.evaluation import leaderboard as lb
    from genrec_lib.models import get_model
    from genrec_lib.training import seed_everything

    if not Path(genrec_lib.__file__).resolve().is_relative_to(source.resolve()):
        raise SystemExit(f"genrec_lib is imported from {genrec_lib.__file__}, not from --source {source}")
    plan: dict[str, list[str]] = {}  # model -> protocols, in the order asked
    for spec in specs:
        protocols, colon, models = spec.partition(":")
        protocols = protocols.split("+")
        bad = [p for p in protocols if p not in lb.BOARD_PROTOCOLS]
        if not colon or bad or not models:
            raise SystemExit(f"--train expects PROTOCOLS:MODELS such as loo+llmrank:cfgan,diffrec, got {spec!r}")
        for model in models.split(","):
            plan.setdefault(model, []).extend(p for p in protocols if p not in plan.get(model, []))
    try:
        overrides = parse_model_overrides(pairs, sorted(plan))
    except UsageError as e:
        raise SystemExit(str(e))
    seed, splits = 2020, {}
    for model, protocols in plan.items():
        fits = {}  # split protocol -> board protocols it serves
        for protocol in protocols:
            fits.setdefault("loo" if protocol == "llmrank" else protocol, []).append(protocol)
        for split_protocol, boards in fits.items():
            if split_protocol not in splits:
                splits[split_protocol] = load_split("ml-100k", split_protocol, seed)
            split = splits[split_protocol]
            seed_everything(seed)
            fitted = get_model(model, **overrides.get(model, {}))
            if hasattr(fitted, "seed"):
                fitted.seed = seed
            cpu, start = time.process_time(), time.perf_counter()
            try:
                fitted.fit(split)
            except ValueError as error:  # the model cannot run on this dataset (e.g. it needs item images)
                print(f"{model} cannot run on {split.dataset.name} ({', '.join(boards)}): {error}", flush=True)
                note = results / "leaderboard" / CANNOT_RUN
                notes = json.loads(note.read_text()) if note.is_file() else {}
                known = notes.setdefault(split.dataset.name, {}).get(model, {}).get("protocols", [])
                notes[split.dataset.name][model] = {"protocols": sorted(set(known) | set(boards)), "why": str(error)}
                note.parent.mkdir(parents=True, exist_ok=True)
                note.write_text(json.dumps(notes, indent=1, sort_keys=True) + "\n")
                continue
            fit_seconds = time.perf_counter() - start
            for board in boards:
                evaluate = lb.evaluate_llmrank_entry if board == "llmrank" else lb.evaluate_entry
                entry = evaluate(fitted, split, fit_seconds=fit_seconds, source="leaderboard",
                                 overrides=overrides.get(model))
                lb.save_entry(entry)
                print(f"{model} on {board}: NDCG@10 {entry['metrics']['ndcg@10']:.4f}, fit {fit_seconds:.0f} s wall; "
                      f"{time.process_time() - cpu:.0f} CPU s so far for this fit", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
