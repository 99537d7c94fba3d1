"""The llmrank protocol: candidates, histories, chance level, tie handling, bad input."""

import numpy as np
import pytest
import torch

from genrec_lib.data import make_split
from genrec_lib.evaluation.llmrank import (candidate_metrics, evaluate_llmrank, intervals, make_llmrank_task,
                                           random_expectation)
from genrec_lib.models import get_model


@pytest.fixture(scope="module")
def loo(ml100k):
    return make_split(ml100k, "loo", seed=2020)


@pytest.fixture(scope="module")
def task(loo):
    return make_llmrank_task(loo, "test", seed=2020)


def test_task_shapes_and_candidates(task, loo):
    assert task.candidates.shape == (200, 20) and len(set(task.users)) == 200
    # the target is among the candidates exactly once, and the other 19 were never interacted with
    assert ((task.candidates == task.targets[:, None]).sum(1) == 1).all()
    interacted = loo.dataset.csr()[task.users].toarray() > 0
    negatives = np.take_along_axis(interacted, task.candidates, 1) & (task.candidates != task.targets[:, None])
    assert not negatives.any()
    assert all(len(set(row)) == 20 for row in task.candidates)
    # the target's position is spread over the list (shuffled), not always first
    assert len(set(task.target_column)) > 10


def test_history_is_strictly_before_the_target(task, loo):
    test = loo.test
    target_time = dict(zip(test.user, test.timestamp))
    data = loo.dataset
    time_of = {(u, i): t for u, i, t in zip(data.user, data.item, data.timestamp)}
    for user, history in zip(task.users, task.history):
        assert 1 <= len(history) <= 20
        assert all(time_of[(user, i)] < target_time[user] for i in history)
        times = [time_of[(user, i)] for i in history]
        assert times == sorted(times)  # oldest first


def test_seeded_and_stage_specific(loo, task):
    again = make_llmrank_task(loo, "test", seed=2020)
    assert (again.candidates == task.candidates).all() and (again.users == task.users).all()
    other = make_llmrank_task(loo, "test", seed=7)
    assert not (other.users == task.users).all()
    valid = make_llmrank_task(loo, "valid", seed=2020)
    test_item = dict(zip(loo.test.user, loo.test.item))
    assert all(target != test_item[user] for user, target in zip(valid.users, valid.targets))


def test_random_model_sits_on_the_formula_and_pop_beats_it(loo):
    big = make_llmrank_task(loo, "test", n_users=900, seed=1)
    expected = random_expectation()
    assert expected["ndcg@10"] == pytest.approx(0.2272, abs=1e-4)
    chance = evaluate_llmrank(get_model("random").fit(loo), big)
    _, low, high = intervals(chance, ("ndcg@10",))["ndcg@10"]
    assert low < expected["ndcg@10"] < high
    assert abs(chance["hit@1"] - 0.05) < 0.03
    pop = evaluate_llmrank(get_model("pop").fit(loo), big)
    assert 0.35 < pop["ndcg@10"] < 0.75


def test_metrics_of_oracle_constant_and_unrankable(task):
    oracle = torch.zeros(task.candidates.shape)
    oracle[np.arange(200), task.target_column] = 1.0
    result = candidate_metrics(oracle, task)
    assert result["ndcg@10"] == 1 and result["hit@1"] == 1 and result["mrr"] == 1
    # all candidates unrankable (-inf) is chance, not index order
    unrankable = candidate_metrics(torch.full(task.candidates.shape, float("-inf")), task)
    assert 0.05 < unrankable["ndcg@10"] < 0.45
    # an anti-oracle puts the target last
    assert candidate_metrics(-oracle, task)["rank"] == 20


def test_bad_input_is_a_clear_error(loo, task, ml100k):
    with pytest.raises(ValueError, match="temporal leave-one-out"):
        make_llmrank_task(make_split(ml100k, "random", seed=1))
    with pytest.raises(ValueError, match="n_users=5000"):
        make_llmrank_task(loo, n_users=5000)
    with pytest.raises(ValueError, match="n_candidates"):
        make_llmrank_task(loo, n_candidates=1)
    with pytest.raises(ValueError, match="expected \\(200, 20\\)"):
        candidate_metrics(torch.zeros(3, 20), task)
    with pytest.raises(ValueError, match="NaN"):
        candidate_metrics(torch.full((200, 20), float("nan")), task)
