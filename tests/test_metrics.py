import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_lib.evaluation.metrics import compute_metrics


def metrics_for(hit_rows, n_relevant, k):
    hits = torch.tensor(hit_rows, dtype=torch.float32)
    return {name: v.numpy() for name, v in compute_metrics(hits, torch.tensor(n_relevant), ks=(k,)).items()}


def test_hand_computed_case():
    # User 0: relevant items at ranks 1 and 3 of 3 relevant; user 1: no hit.
    m = metrics_for([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0]], [3, 2], k=5)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert np.allclose(m["ndcg@5"], [dcg / idcg, 0.0])
    assert np.allclose(m["recall@5"], [2 / 3, 0.0])
    assert np.allclose(m["precision@5"], [2 / 5, 0.0])
    assert np.allclose(m["hit@5"], [1.0, 0.0])
    assert np.allclose(m["mrr@5"], [1.0, 0.0])


def test_mrr_uses_first_hit_rank():
    m = metrics_for([[0, 0, 1, 1]], [2], k=4)
    assert np.allclose(m["mrr@4"], [1 / 3])


def test_idcg_is_capped_at_k():
    # 10 relevant items, all 3 slots hit: a perfect top-3 list.
    m = metrics_for([[1, 1, 1]], [10], k=3)
    assert np.allclose(m["ndcg@3"], [1.0])
    assert np.allclose(m["recall@3"], [0.3])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1), min_size=10, max_size=10), min_size=1, max_size=8), st.integers(1, 10))
def test_metrics_are_bounded(rows, k):
    n_relevant = [max(sum(r), 1) + 2 for r in rows]
    m = metrics_for(rows, n_relevant, k)
    for name, values in m.items():
        assert np.all(values >= 0) and np.all(values <= 1 + 1e-12), name


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.integers(1, 10))
def test_perfect_ranking_scores_one(n_relevant, k):
    row = [1] * min(n_relevant, k) + [0] * (k - min(n_relevant, k))
    m = metrics_for([row], [n_relevant], k)
    assert np.allclose(m[f"ndcg@{k}"], 1.0)
    assert np.allclose(m[f"hit@{k}"], 1.0)
    assert np.allclose(m[f"mrr@{k}"], 1.0)


def test_unknown_metric_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(torch.zeros(1, 10), torch.ones(1), ks=(10,), metrics=("auc",))
