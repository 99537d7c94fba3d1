import json
import subprocess
import sys

import pandas as pd
import pytest

from genrec_lib.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "genrec_lib.cli", *args], capture_output=True, text=True)


def test_bench_writes_the_documented_json(tmp_path):
    out = tmp_path / "ease.json"
    result = run("bench", "--dataset", "ml-100k", "--protocol", "random", "--model", "ease", "--json", str(out),
                 "--unmasked")
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert {"model", "dataset", "protocol", "seed", "metrics", "fit_seconds", "eval_seconds"} <= set(record)
    assert {"recall@10", "ndcg@10", "hit@10", "mrr@10", "precision@10"} <= set(record["metrics"]["test"])
    # EASE on this split: ~.33 masked; a ceiling catches a leak as the floor catches a regression.
    assert 0.31 < record["metrics"]["test"]["ndcg@10"] < 0.37
    # Unmasked, the items each user has seen compete with the held-out ones (~.06 for EASE).
    assert 0.02 < record["metrics_unmasked"]["test"]["ndcg@10"] < 0.5 * record["metrics"]["test"]["ndcg@10"]
    assert "ndcg@10" in result.stdout and "unmasked" in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["bench", "--model", "nope"], "unknown model 'nope'; choose one of: "),
        (["bench", "--model", "ease", "--dataset", "netflix"], "choose one of: ml-100k, ml-1m"),
        (["bench", "--model", "ease", "--protocol", "temporal"], "choose one of: random, loo"),
        (["bench"], "missing --model; choose one of"),
        (["bench", "--model", "ease", "--json", "/nonexistent-dir/x.json"], "cannot write"),
        (["data", "export", "--protocol", "x", "--out", "/tmp/x"], "choose one of: random, loo"),
        ([], "choose one of: bench, chat, data"),
        (["bench", "--model", "ease", "--set", "l2"], "--set expects KEY=VALUE"),
        (["bench", "--model", "ease", "--set", "lambda_=3"], "bad --set for ease"),
        (["bench", "--model", "ease", "--set", "l2=-1"], "l2 must be > 0"),
        (["bench", "--model", "bgn", "--protocol", "random"], "use --protocol bundle"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    if "unknown model" in err:
        assert all(name in err for name in ("bpr", "ease", "itemknn", "pop"))


def test_bench_runs_the_bundle_generator_on_the_bundle_protocol(tmp_path):
    """BGN declares the bundle protocol; one short epoch through the real CLI and the real split."""
    out = tmp_path / "bgn.json"
    settings = ["--set", "epochs=1", "--set", "dim=16", "--set", "n_layers=1", "--set", "max_seq_len=8"]
    result = run("bench", "--protocol", "bundle", "--model", "bgn", "--json", str(out), *settings)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["protocol"] == "bundle" and record["epochs"] == 1
    # Held-out bundles of 2+ items: one epoch is above chance (~.006) and far below a leak (~1).
    assert 0.01 < record["metrics"]["test"]["ndcg@10"] < 0.4


def test_bench_applies_overrides(tmp_path):
    out = tmp_path / "ease.json"
    assert main(["bench", "--model", "ease", "--set", "l2=50", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["overrides"] == {"l2": 50}


def test_export_writes_three_parts_with_original_ids(tmp_path):
    assert main(["data", "export", "--dataset", "ml-100k", "--protocol", "loo", "--out", str(tmp_path / "out")]) == 0
    parts = {p: pd.read_csv(tmp_path / "out" / f"{p}.tsv", sep="\t") for p in ("train", "valid", "test")}
    assert sum(len(f) for f in parts.values()) == 100_000
    assert list(parts["test"].columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(parts["test"]) == 943 and parts["test"]["user_id"].min() == 1


def test_export_refuses_a_file_as_folder(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert main(["data", "export", "--out", str(target)]) == 2
    assert target.read_text() == "keep me"
