"""The leaderboard: registry-driven, reuses recorded entries, trains only what is missing."""

import functools
import json
import subprocess
import sys

import pandas as pd
import pytest

from genrec_lib.evaluation import leaderboard as lb
from genrec_lib.models import MODELS, Recommender, register


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "genrec_lib.cli", *args], capture_output=True, text=True, env=env)


def test_every_registered_model_is_listed():
    names = lb.registered_models("random")
    assert set(names) == {n for n, cls in MODELS.items() if "random" in lb.supported_protocols(cls)}
    assert {"pop", "ease"} <= set(names)


def test_a_newly_registered_model_appears_and_can_opt_out_of_a_protocol():
    @register("_leaderboard_probe")
    class Probe(Recommender):
        protocols = ("random",)

    try:
        assert "_leaderboard_probe" in lb.registered_models("random")
        assert "_leaderboard_probe" not in lb.registered_models("loo")
    finally:
        MODELS.pop("_leaderboard_probe")


def test_cli_writes_csv_and_markdown_then_reuses_entries(tmp_path, monkeypatch):
    import os

    env = {**os.environ, "GENREC_RESULTS": str(tmp_path / "results")}
    out = tmp_path / "board"
    first = run("leaderboard", "--protocol", "random", "--models", "pop,ease", "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    assert "training pop" in first.stderr and "training ease" in first.stderr
    frame = pd.read_csv(out / "leaderboard_ml-100k_random.csv")
    assert list(frame["model"]) == ["ease", "pop"]  # sorted by NDCG@10
    ease = frame.set_index("model").loc["ease"]
    assert 0.31 < ease["ndcg@10"] < 0.40 and ease["low"] < ease["ndcg@10"] < ease["high"]
    pop = frame.set_index("model").loc["pop"]
    assert pop["coverage"] < ease["coverage"] and pop["arp"] > ease["arp"]
    assert (out / "leaderboard_ml-100k_random.md").read_text().count("\n| ") >= 3
    # A second run reads what the first recorded and trains nothing.
    second = run("leaderboard", "--protocol", "random", "--models", "ease", "itemknn", "--no-train", "--out", str(out), env=env)
    assert second.returncode == 0, second.stderr
    assert "training" not in second.stderr
    again = pd.read_csv(out / "leaderboard_ml-100k_random.csv").set_index("model")
    assert again.loc["ease", "ndcg@10"] == pytest.approx(ease["ndcg@10"])
    assert again.loc["itemknn", "source"] == "missing"
    # An entry written by other code is refused with one line when training is not allowed.
    path = tmp_path / "results" / "leaderboard" / "ml-100k" / "random-seed2020" / "ease.json"
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "provenance": {**entry["provenance"], "library": "0.0.1"}}))
    third = run("leaderboard", "--protocol", "random", "--models", "ease", "--no-train", "--out", str(out), env=env)
    assert third.returncode == 2 and len(third.stderr.strip().splitlines()) == 1
    assert "entry of ease (seed 2020) is stale: it was written by genrec_lib 0.0.1" in third.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["leaderboard", "--protocol", "random", "--models", "nope", "--out", "/tmp/x"], "unknown model for protocol random 'nope'"),
        (["leaderboard", "--protocol", "temporal", "--out", "/tmp/x"], "choose one of: random, loo"),
        (["leaderboard", "--protocol", "random", "--set", "ease.l2=-1", "--out", "/tmp/x"], "l2 must be > 0"),
        (["leaderboard", "--protocol", "random", "--set", "l2=5", "--out", "/tmp/x"], "MODEL.KEY=VALUE"),
        (["leaderboard", "--protocol", "random", "--no-train", "--retrain", "--out", "/tmp/x"], "contradict"),
    ],
)
def test_bad_leaderboard_arguments_get_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_entries_are_keyed_by_dataset(tmp_path, monkeypatch):
    """An entry on another dataset (chapter 14's image catalogue) never shadows the MovieLens one."""
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    base = {"model": "bpr", "protocol": "random", "seed": 2020, "source": "test"}
    lb.save_entry({**base, "dataset": "ml-100k", "metrics": {"ndcg@10": 0.3}})
    lb.save_entry({**base, "dataset": "tuxpaint-stamps", "metrics": {"ndcg@10": 0.1}})
    assert lb.load_entry("random", 2020, "bpr")["metrics"]["ndcg@10"] == 0.3
    assert lb.load_entry("random", 2020, "bpr", dataset="tuxpaint-stamps")["metrics"]["ndcg@10"] == 0.1
    assert lb.load_entry("random", 2020, "bpr", dataset="ml-1m") is None
    with pytest.raises(ValueError, match="no 'dataset'"):
        lb.save_entry(base)
    with pytest.raises(ValueError, match="dataset must be a plain name"):
        lb.entry_path("random", 2020, "bpr", dataset="../x")


def test_llmrank_board_puts_language_models_and_full_ranking_models_on_the_same_candidates(tmp_path, monkeypatch):
    from genrec_lib.data import load_split
    from genrec_lib.evaluation.llmrank import evaluate_llmrank, make_llmrank_task, random_expectation
    from genrec_lib.models import get_model

    names = lb.registered_models("llmrank")
    assert {"llm-zeroshot", "pop", "ease"} <= set(names) and "bgn" not in names  # bgn ranks bundles only
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    entries = lb.collect("llmrank", ["pop", "ease"], train=True, log=None)
    assert [e["protocol"] for e in entries] == ["llmrank", "llmrank"]
    assert lb.entry_path("llmrank", 2020, "ease").is_file()
    split = load_split("ml-100k", "loo", 2020)
    direct = evaluate_llmrank(get_model("pop").fit(split), make_llmrank_task(split, "test", seed=2020))
    assert entries[0]["metrics"]["ndcg@10"] == pytest.approx(direct.metrics["ndcg@10"])  # what genrec bench reports
    board = lb.table(entries).set_index("model")
    chance = random_expectation()["ndcg@10"]
    # 20 candidates, one relevant: popularity is far above chance (about .5) and nowhere near perfect
    assert chance + 0.1 < board.loc["pop", "ndcg@10"] < 0.75, board
    assert board.loc["pop", "low"] < board.loc["pop", "ndcg@10"] < board.loc["pop", "high"]
    assert "coverage" not in board and "sampled ndcg@10" not in board  # no full-ranking columns on candidates
    with pytest.raises(ValueError, match="drawn from the loo split"):
        lb.evaluate_llmrank_entry(get_model("pop").fit(load_split("ml-100k", "random", 2020)),
                                  load_split("ml-100k", "random", 2020), fit_seconds=0, source="test")


def test_entries_record_what_produced_them_and_a_stale_one_is_refused_or_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    logged = []
    first, = lb.collect("random", ["pop"], train=True, log=logged.append)
    assert logged == ["training pop on random (seed 2020) ..."]
    assert first["provenance"] == lb.provenance(MODELS["pop"], None) and 0 < first["valid"]["ndcg@10"] < 1
    # Current code and settings: reused, nothing trained.
    again, = lb.collect("random", ["pop"], train=False, log=logged.append)
    assert again == first and len(logged) == 1
    # The same entry as if written by other code: refused with one line when it may not be trained ...
    path = lb.entry_path("random", 2020, "pop")
    path.write_text(json.dumps({**first, "provenance": {**first["provenance"], "code": "0" * 16}}))
    with pytest.raises(lb.StaleEntryError, match="entry of pop .* is stale: the code of the model") as refused:
        lb.collect("random", ["pop"], train=False, log=None)
    assert "\n" not in str(refused.value)
    # ... and retrained when it may.
    retrained, = lb.collect("random", ["pop"], train=["pop"], log=logged.append)
    assert "stale" in logged[1] and logged[2].startswith("training pop")
    assert retrained["provenance"]["code"] == first["provenance"]["code"] and lb.load_entry("random", 2020, "pop") == retrained
    # An entry without provenance (an older library) is stale too.
    path.write_text(json.dumps({k: v for k, v in first.items() if k != "provenance"}))
    assert "no provenance" in lb.stale_reason(lb.load_entry("random", 2020, "pop"))


def test_settings_asked_for_must_match_the_recorded_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    default, = lb.collect("random", ["itemknn"], train=True, log=None)
    assert default["provenance"]["overrides"] == {}
    assert lb.stale_reason(default, None) is None and lb.stale_reason(default, {}) is None
    assert "trained with settings {}, asked for {'k': 20}" in lb.stale_reason(default, {"k": 20})
    with pytest.raises(lb.StaleEntryError, match="trained with settings"):
        lb.collect("random", ["itemknn"], train=False, overrides={"itemknn": {"k": 20}}, log=None)
    small, = lb.collect("random", ["itemknn"], train=True, overrides={"itemknn": {"k": 20}}, log=None)
    assert small["provenance"]["overrides"] == {"k": 20} and small["metrics"] != default["metrics"]
    # Without settings asked for, whatever was recorded is accepted (a chapter's own settings).
    assert lb.collect("random", ["itemknn"], train=False, log=None)[0] == small


def test_code_hash_tells_models_apart_and_is_stable():
    assert lb.code_hash(MODELS["pop"]) == lb.code_hash(MODELS["pop"]) != lb.code_hash(MODELS["ease"])
    assert lb.provenance(MODELS["ease"], {"shape": (2, 3)})["overrides"] == {"shape": [2, 3]}  # as JSON reads it back


def test_shipped_entries_fill_the_board_labelled_and_checked_for_staleness(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path / "shipping"))
    made, = lb.collect("random", ["pop"], train=True, log=None)
    record = {"runs": {"r": {"commit": "abc1234", "date": "d", "machine": "m", "how": "h"}},
              "entries": [{**made, "source": "02_protocols_metrics_baselines", "run": "r"},
                          {**made, "model": "itemknn", "run": "r",
                           "provenance": {**lb.provenance(MODELS["itemknn"]), "code": "0" * 16}}]}
    path = tmp_path / "leaderboard_entries.json"
    path.write_text(json.dumps(record))
    monkeypatch.setattr(lb, "shipped_entries", functools.partial(lb.shipped_entries, path=path))
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path / "run"))  # this run: nothing recorded
    logged = []
    pop, knn = lb.collect("random", ["pop", "itemknn"], train=False, shipped=True, log=logged.append)
    assert pop["source"] == "shipped: 02_protocols_metrics_baselines @ abc1234" and pop["metrics"] == made["metrics"]
    assert pop["shipped"]["run"]["commit"] == "abc1234"
    assert knn["source"] == "missing" and "stale" in knn["why"] and "itemknn" in logged[0]
    assert not lb.load_entry("random", 2020, "pop"), "a shipped entry must not be written among this run's entries"
    # Without shipped=True, or when this run has its own entry, the shipped one is not used.
    assert lb.collect("random", ["pop"], train=False, log=None)[0]["source"] == "missing"
    own, = lb.collect("random", ["pop"], train=True, shipped=True, log=None)
    assert own["source"] == "leaderboard"


def test_the_shipped_record_names_a_run_for_every_entry():
    entries = lb.shipped_entries()
    assert entries, "genrec_lib/records/leaderboard_entries.json is missing: run scripts/ship_leaderboard_entries.py"
    for (protocol, seed, model), entry in entries.items():
        run = entry["shipped"]["run"]
        assert run["commit"] and run["how"] and entry["source"].startswith("shipped: ")
        assert entry["per_user"]["ndcg@10"] and len(entry["users"]) == len(entry["per_user"]["ndcg@10"])
        assert entry["provenance"]["code"] and protocol in lb.BOARD_PROTOCOLS


def test_every_shipped_entry_matches_the_code_at_hand():
    # chapter 16 run on its own leaves a stale entry out: a change to a model, the trainer or the evaluator
    # must come with its entries trained again (scripts/ship_leaderboard_entries.py --train), or the board
    # loses those rows without any other test noticing
    stale = {f"{protocol}/{model}": lb.stale_reason(entry) for (protocol, seed, model), entry in lb.shipped_entries().items()
             if lb.stale_reason(entry)}
    assert not stale, f"shipped entries stale against this code, train and ship them again: {stale}"


def test_models_the_shipped_record_says_cannot_run_are_registered_and_say_why():
    from genrec_lib.results import benchmark_record

    record = benchmark_record(lb.SHIPPED_RECORD)
    for dataset, models in record.get("cannot_run", {}).items():
        for model, note in models.items():
            assert model in MODELS and note["why"] and record["runs"][note["run"]]["commit"]
            assert set(note["protocols"]) <= set(lb.BOARD_PROTOCOLS)
            # a model the record says cannot run has no shipped entry on those boards
            assert not any(e["model"] == model and e["dataset"] == dataset and e["protocol"] in note["protocols"]
                           for e in record["entries"])
