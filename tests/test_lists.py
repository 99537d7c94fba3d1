"""List metrics and the MMR re-ranker on hand-made examples."""

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_lib.evaluation.lists import (co_occurrence, coherence, genre_coverage, genre_matrix, jaccard,
                                         list_accuracy, pairwise_mean, redundancy, set_overlap)
from genrec_lib.models.mmr import mmr_rerank

ITEMS = pd.DataFrame({"genres": [["Drama"], ["Drama"], ["Comedy"], ["Comedy", "Drama"], ["Horror"]]})


def test_genre_metrics():
    G, names = genre_matrix(ITEMS)
    assert names == ["Comedy", "Drama", "Horror"]
    S = jaccard(G)
    assert S[0, 1] == 1 and S[0, 2] == 0 and S[0, 3] == pytest.approx(0.5)
    lists = torch.tensor([[0, 1, -1], [0, 2, 4]])
    assert pairwise_mean(lists, S).tolist() == [1.0, 0.0]
    assert redundancy(lists, G).tolist() == [1.0, 0.0]
    assert genre_coverage(lists, G).tolist() == pytest.approx([1 / 3, 1.0])
    assert torch.isnan(pairwise_mean(torch.tensor([[3, -1, -1]]), S)).all()
    with pytest.raises(ValueError, match="shape"):
        pairwise_mean(torch.tensor([1, 2]), S)


def test_accuracy_and_overlap():
    targets = torch.tensor([[0, 1, 0, 0, 1.0], [1, 0, 0, 0, 0]])
    lists = torch.tensor([[1, 2, 3], [2, 3, -1]])
    acc = list_accuracy(lists, targets)
    assert acc["hit"].tolist() == [1.0, 0.0] and acc["ndcg"][0] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    o = set_overlap(lists, targets)
    assert o["precision"].tolist() == pytest.approx([1 / 3, 0]) and o["recall"].tolist() == pytest.approx([0.5, 0])
    assert o["f1"][0] == pytest.approx(0.4)


def test_co_occurrence_and_coherence():
    C = co_occurrence([np.array([0, 1]), np.array([1, 2, 3])], 5)
    assert C[0, 1] == C[1, 0] == 1 and C[0, 2] == 0 and C[0, 0] == 0
    assert coherence(torch.tensor([[1, 2, 3], [0, 4, -1]]), C).tolist() == [1.0, 0.0]


def test_mmr_trades_relevance_for_diversity():
    scores = torch.tensor([[5.0, 4.9, 4.8, 1.0, float("-inf")]])
    S = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1.0]])
    assert mmr_rerank(scores, S, 2, 1.0, n_candidates=4).tolist() == [[0, 1]]  # lambda 1 = greedy
    assert mmr_rerank(scores, S, 2, 0.3, n_candidates=4).tolist() == [[0, 3]]  # the unlike item moves up
    assert 4 not in mmr_rerank(scores, S, 3, 0.0, n_candidates=4)[0].tolist()  # -inf items are never candidates
    with pytest.raises(ValueError, match="lam"):
        mmr_rerank(scores, S, 2, 1.5)
    with pytest.raises(ValueError, match="n_candidates"):
        mmr_rerank(scores, S, 3, 0.5, n_candidates=2)
