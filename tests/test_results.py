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
