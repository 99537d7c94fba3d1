"""FaiRLLM's list similarities and unfairness measures (chapter 17): hand cases, the authors'
loop definitions, bad input, and the ranker that states an attribute in its prompt."""

import numpy as np
import pytest

from genrec_lib.data import make_split
from genrec_lib.evaluation.llmrank import make_llmrank_task
from genrec_lib.risks import fairness


def _serp_loop(a, b):
    """SERP*@K as the paper writes it: shared items weighted by K - rank + 1, over K(K+1)/2."""
    K = len(a)
    return sum(K - r for r, v in enumerate(a) if v in b) / (K * (K + 1) / 2)


def _prag_loop(a, b):
    """PRAG*@K as the authors' code counts it: pairs of the attribute's list kept by the neutral list."""
    kept = pairs = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            pairs += 1
            if a[i] in b and (a[j] not in b or b.index(a[i]) < b.index(a[j])):
                kept += 1
    return kept / pairs


def test_similarities_of_a_hand_case():
    a = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]])
    b = np.array([[3, 1, 4], [1, 2, 3], [3, 2, 1], [4, 5, 6]])
    # [3, 1, 4]: shares {1, 3}; 1 at rank 1 (weight 3), 3 at rank 3 (weight 1); of the pairs
    # (1,2) (1,3) (2,3) only (1,2) keeps its order (2 is absent from the neutral list).
    assert np.allclose(fairness.jaccard_at_k(a, b), [2 / 4, 1, 1, 0])
    assert np.allclose(fairness.serp_at_k(a, b), [4 / 6, 1, 1, 0])
    assert np.allclose(fairness.prag_at_k(a, b), [1 / 3, 1, 0, 0])   # a reversed list keeps no pair


def test_similarities_match_the_loop_definitions():
    rng = np.random.default_rng(0)
    for K in (2, 5, 10):
        a = np.stack([rng.choice(20, K, replace=False) for _ in range(50)])
        b = np.stack([rng.choice(20, K, replace=False) for _ in range(50)])
        assert np.allclose(fairness.serp_at_k(a, b), [_serp_loop(list(x), list(y)) for x, y in zip(a, b)])
        assert np.allclose(fairness.prag_at_k(a, b), [_prag_loop(list(x), list(y)) for x, y in zip(a, b)])
        assert np.allclose(fairness.jaccard_at_k(a, b), [len(set(x) & set(y)) / len(set(x) | set(y))
                                                         for x, y in zip(a, b)])
    # K = 1: the same item or not
    assert fairness.prag_at_k([[4], [4]], [[4], [5]]).tolist() == [1.0, 0.0]


def test_similarities_refuse_bad_lists():
    with pytest.raises(ValueError, match="same shape"):
        fairness.jaccard_at_k([[1, 2]], [[1, 2, 3]])
    with pytest.raises(ValueError, match="repeat an item"):
        fairness.serp_at_k([[1, 1]], [[1, 2]])


def test_snsr_snsv():
    snsr, snsv = fairness.snsr_snsv({"F": [1.0, 0.5], "M": [0.5, 0.5]})
    assert snsr == pytest.approx(0.25) and snsv == pytest.approx(0.125)
    assert fairness.snsr_snsv({"a": [0.3, 0.7], "b": [0.5], "c": [0.6, 0.4]}) == pytest.approx((0.0, 0.0))
    with pytest.raises(ValueError, match="at least two values"):
        fairness.snsr_snsv({"F": [1.0]})


def test_top_k_lists_best_first_with_seeded_random_ties():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, 1.0, 1.0, 1.0]])
    assert fairness.top_k_lists(scores, 2)[0].tolist() == [1, 3]
    tied = [tuple(fairness.top_k_lists(scores, 4, seed=s)[1]) for s in range(20)]
    assert len(set(tied)) > 1 and all(sorted(t) == [0, 1, 2, 3] for t in tied)
    assert np.array_equal(fairness.top_k_lists(scores, 4, seed=3), fairness.top_k_lists(scores, 4, seed=3))
    with pytest.raises(ValueError, match="k <= candidates"):
        fairness.top_k_lists(scores, 5)


def test_statements():
    assert fairness.statement("gender", "F") == "I am a woman."
    assert set(fairness.STATEMENTS["age"]) == set(fairness.age_bands(np.array([20, 30, 40, 50])))
    with pytest.raises(ValueError, match="choose one of: F, M"):
        fairness.statement("gender", "X")
    with pytest.raises(ValueError, match="no statements"):
        fairness.statement("zodiac", "Leo")


@pytest.mark.slow
def test_stated_attribute_ranker_prompt_and_scores(ml100k):
    from genrec_lib.models.llm.lm import load_lm
    from genrec_lib.models.llm.rankers import LLMRank

    split = make_split(ml100k, "loo", seed=2020)
    task = make_llmrank_task(split, "test", n_users=2, n_candidates=4, history_len=3)
    lm = load_lm()
    ranker = fairness.StatedAttributeRanker(n_history=3).fit(split, lm=lm)
    plain = LLMRank(n_history=3).fit(split, lm=lm)
    history = task.history[0]
    assert ranker.prompt(history) == plain.prompt(history)                 # no statement: the neutral prompt
    ranker.statement_ = "I am a woman."
    assert "I am a woman. I have watched these movies" in ranker.prompt(history)
    ranker.statement_ = ""
    neutral = ranker.score_with_statements(task, ["", ""])
    told = ranker.score_with_statements(task, ["I am a woman.", ""])
    assert np.allclose(neutral.numpy(), plain.score_candidates(task).numpy(), atol=1e-4)
    assert not np.allclose(told[0].numpy(), neutral[0].numpy()) and np.allclose(told[1], neutral[1])
    assert ranker.statement_ == ""
    with pytest.raises(ValueError, match="one statement per task user"):
        ranker.score_with_statements(task, ["I am a man."])
