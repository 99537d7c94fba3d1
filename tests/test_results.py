import pytest

from genrec_lib import results


def test_record_and_read_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    results.record("99_demo", "ease.test.ndcg@10", 0.33)
    results.record("99_demo", "note", "full ranking")
    assert results.read("99_demo") == {"ease.test.ndcg@10": 0.33, "note": "full ranking"}
    assert results.read("98_missing") == {}


def test_bad_values_and_names_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match="non-finite"):
        results.record("99_demo", "x", float("nan"))
    with pytest.raises(ValueError, match="plain name"):
        results.record("../escape", "x", 1.0)


def test_chapter_timer_records_seconds_and_warns_over_budget(tmp_path, monkeypatch):
    import time

    import torch

    monkeypatch.setenv("GENREC_RESULTS", str(tmp_path))
    results.start_chapter("99_demo", threads=torch.get_num_threads())  # the test process keeps its count
    time.sleep(0.05)
    with pytest.warns(UserWarning, match="over its budget"):
        seconds = results.finish_chapter("99_demo", budget_s=0.01)
    assert 0.05 <= seconds < 5
    assert results.read("99_demo")["chapter.seconds"] == round(seconds, 1)
    with pytest.raises(ValueError, match="without start_chapter"):
        results.finish_chapter("98_never_started")


def test_benchmark_record_reads_the_llmrank_file_and_names_a_missing_one(tmp_path):
    record = results.benchmark_record("llmrank_finetuned")
    for spec, model in record["models"].items():
        assert len(model["users"]) == len(model["ndcg@10"]) == record["runs"][model["run"]]["users"], spec
        assert all(0.0 <= v <= 1.0 for v in model["ndcg@10"]), spec
        assert abs(sum(model["ndcg@10"]) / len(model["ndcg@10"]) - model["metrics"]["ndcg@10"]) < 1e-3, spec
    with pytest.raises(FileNotFoundError, match="run benchmarks/nothing.py"):
        results.benchmark_record("nothing", path=tmp_path / "nothing.json")
