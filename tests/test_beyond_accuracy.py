"""Beyond-accuracy metrics against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from genrec_lib.evaluation import metrics as M


def test_gini_of_equal_exposure_is_zero_and_of_one_item_is_maximal():
    assert M.gini_index([3, 3, 3, 3]) == pytest.approx(0.0)
    # One item holds all exposure among n: G = (n - 1) / n.
    assert M.gini_index([0, 0, 0, 5]) == pytest.approx(3 / 4)
    # Hand case: sorted (1, 2, 3): sum (2i-n-1) x = (-2)(1) + 0 + 2(3) = 4; n sum x = 18.
    assert M.gini_index([3, 1, 2]) == pytest.approx(4 / 18)
    # Every item shown equally often by a round-robin recommender.
    recs = torch.arange(12).reshape(4, 3)
    assert M.gini_exposure(recs, 12) == pytest.approx(0.0)


def test_coverage_of_a_constant_recommender_is_k_over_n():
    recs = torch.tensor([[4, 7, 1]] * 50)
    assert M.catalogue_coverage(recs, 30) == pytest.approx(3 / 30)
    assert M.catalogue_coverage(torch.arange(30).reshape(10, 3), 30) == pytest.approx(1.0)


def test_arp_novelty_and_long_tail_by_hand():
    popularity = np.array([10, 5, 1, 0])
    recs = torch.tensor([[0, 1], [2, 3]])
    assert M.average_popularity(recs, popularity).tolist() == pytest.approx([7.5, 0.5])
    n_users = 20
    expected = [(-math.log2(10 / 20) - math.log2(5 / 20)) / 2, (-math.log2(1 / 20) - math.log2(1 / 20)) / 2]
    assert M.novelty(recs, popularity, n_users).tolist() == pytest.approx(expected)
    # Head = the top 25% of 4 items = item 0.
    assert M.long_tail_share(recs, popularity, head_share=0.25).tolist() == pytest.approx([0.5, 1.0])


def test_intra_list_diversity_by_hand():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    # Items 0 and 3 point the same way: distance 0. Items 0 and 1 are orthogonal: 1.
    assert M.intra_list_diversity(torch.tensor([[0, 3]]), features).item() == pytest.approx(0.0)
    assert M.intra_list_diversity(torch.tensor([[0, 1]]), features).item() == pytest.approx(1.0)
    # (0, 1, 2): pair distances 1, 1 - 1/sqrt2, 1 - 1/sqrt2.
    expected = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3
    assert M.intra_list_diversity(torch.tensor([[0, 1, 2]]), features).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least two"):
        M.intra_list_diversity(torch.tensor([[0]]), features)


def test_calibration_kl_by_hand():
    genres, vocab = M.genre_matrix([["A"], ["B"], ["A", "B"], ["A"]])
    assert vocab == ["A", "B"]
    history = np.array([[1, 1, 0, 0]])  # p = (1/2, 1/2)
    # A list with the same genre mix is perfectly calibrated.
    assert M.calibration_kl(torch.tensor([[0, 1]]), history, genres).item() == pytest.approx(0.0, abs=1e-12)
    # A list of only genre A: q = (1, 0), q~ = (0.99 + 0.005, 0.005).
    alpha = 0.01
    q = np.array([1 - alpha + alpha / 2, alpha / 2])
    expected = 0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1])
    assert M.calibration_kl(torch.tensor([[0, 3]]), history, genres, alpha=alpha).item() == pytest.approx(expected)


def test_bad_recommendation_lists_get_clear_errors():
    with pytest.raises(ValueError, match="outside"):
        M.catalogue_coverage(torch.tensor([[0, 9]]), 5)
    with pytest.raises(ValueError, match="integer"):
        M.catalogue_coverage(torch.tensor([[0.0, 1.0]]), 5)
    with pytest.raises(ValueError, match="non-negative"):
        M.gini_index([1, -1])


def test_beyond_accuracy_summary_keys():
    genres, _ = M.genre_matrix([["A"], ["B"], ["A", "B"], ["A"]])
    out = M.beyond_accuracy(torch.tensor([[0, 1], [2, 3]]), 4, [4, 3, 2, 1], 5,
                            history=np.eye(2, 4), item_genres=genres, text_embeddings=torch.eye(4))
    assert set(out) == {"coverage", "gini", "arp", "novelty", "long_tail_share", "ild_genre", "calibration_kl", "ild_text"}
    assert out["coverage"] == 1.0 and out["ild_text"] == pytest.approx(1.0)
