"""The side-by-side table (benchmarks/side_by_side.py) merges runs by (protocol, model, library)
and the committed table is complete and self-consistent."""

import importlib.util
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("side_by_side", ROOT / "benchmarks" / "side_by_side.py")
sbs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sbs)


def row(protocol, model, library, ndcg, run):
    return {"protocol": protocol, "model": model, "library": library, "masked.ndcg@10": ndcg, "run": run}


def test_merge_replaces_same_key_and_keeps_the_rest():
    old = pd.DataFrame([row("random", "ease", "genrec_lib", 0.3, "a"), row("random", "ease", "RecBole 1.2.1", 0.3, "a"),
                        row("loo", "sasrec", "genrec_lib", 0.1, "a")])
    new = pd.DataFrame([row("random", "pop", "genrec_lib", 0.1, "b"), row("loo", "sasrec", "genrec_lib", 0.2, "b")])
    merged = sbs.merge_rows(old, new)
    assert len(merged) == 4
    keys = list(zip(merged["protocol"], merged["model"], merged["library"]))
    # random before loo, registry order within a protocol, the library before RecBole
    assert keys == [("random", "pop", "genrec_lib"), ("random", "ease", "genrec_lib"),
                    ("random", "ease", "RecBole 1.2.1"), ("loo", "sasrec", "genrec_lib")]
    assert merged.set_index(["protocol", "model", "library"]).loc[("loo", "sasrec", "genrec_lib"), "masked.ndcg@10"] == 0.2
    assert list(merged.columns) == sbs.COLUMNS


def test_committed_table_has_provenance_for_every_row():
    folder = ROOT / "genrec_lib" / "records"  # package data, read by the chapters
    table = pd.read_csv(folder / "side_by_side.csv")
    runs = json.loads((folder / "side_by_side_runs.json").read_text())
    assert not table.duplicated(["protocol", "model", "library"]).any()
    assert set(table["run"]) <= set(runs), "every row's run needs its provenance in side_by_side_runs.json"
    for info in runs.values():
        assert {"seed", "versions", "machine"} <= set(info) and "recbole 1.2.1" in info["versions"]
    # both libraries for every model in the table, metrics in [0, 1] and masked >= unmasked
    assert (table.groupby(["protocol", "model"])["library"].nunique() == 2).all()
    for convention in ("masked", "unmasked"):
        assert table[f"{convention}.ndcg@10"].between(0, 1).all()
    assert (table["masked.ndcg@10"] >= table["unmasked.ndcg@10"] - 1e-9).all()
