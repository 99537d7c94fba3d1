"""Ship leaderboard entries with the library: ``genrec_lib/records/leaderboard_entries.json``.

    # the entries the chapters saved in a recorded standalone run (scripts/standalone_check.py --full)
    python scripts/ship_leaderboard_entries.py --standalone build/standalone
    # entries of a `genrec leaderboard` run (GENREC_RESULTS=DIR), at the commit it ran from
    python scripts/ship_leaderboard_entries.py --results DIR --commit 975eac6 --how "genrec leaderboard --protocol llmrank ..."

Chapter 16 run on its own (from Colab, without the earlier chapters) reads these for every model
it does not train (``leaderboard.collect(..., shipped=True)``), labelled as shipped with the commit
that produced them. Each entry keeps its provenance (library version, code hash, settings), so
the stale check applies to it as to an entry of the same run: this script leaves out (and names)
an entry that is stale against the code of the working tree, and chapter 16 leaves out (and names) one that
has gone stale since. Entries are merged into the record, one per (dataset, protocol, seed,
model); per-user values are kept for NDCG@10 only (what the board's intervals and paired tests use).
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
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from genrec_lib.evaluation import leaderboard as lb

    batches = []  # (run id, run, entries)
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

    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {"runs": {}, "entries": []}
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
    used = {e["run"] for e in keyed.values()}
    data["runs"] = {k: v for k, v in sorted(data["runs"].items()) if k in used}
    data["entries"] = [keyed[k] for k in sorted(keyed)]
    out.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    print(f"{len(data['entries'])} entries in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
