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


# --- candidate sets: uniform, popularity-matched, retrieved ----------------------------------------------


@pytest.fixture(scope="module")
def first_stage(loo):
    from genrec_lib.training import seed_everything

    seed_everything(2020)
    return get_model("bpr", epochs=20, patience=3).fit(loo)


@pytest.fixture(scope="module")
def retrieved(loo, first_stage):
    return make_llmrank_task(loo, "test", seed=2020, candidates="retrieved", first_stage=first_stage)


@pytest.fixture(scope="module")
def popularity(loo):
    return make_llmrank_task(loo, "test", seed=2020, candidates="popularity")


def _check_candidates(task, loo):
    assert task.candidates.shape == (200, 20)
    assert ((task.candidates == task.targets[:, None]).sum(1) == 1).all()  # the target exactly once
    assert all(len(set(row)) == 20 for row in task.candidates)
    interacted = loo.dataset.csr()[task.users].toarray() > 0
    negative = task.candidates != task.targets[:, None]
    assert not (np.take_along_axis(interacted, task.candidates, 1) & negative).any()  # no negative ever rated
    assert len(set(task.target_column)) > 10  # shuffled


def test_every_candidate_set_shares_users_targets_and_histories(task, popularity, retrieved, loo):
    for other in (popularity, retrieved):
        _check_candidates(other, loo)
        assert (other.users == task.users).all() and (other.targets == task.targets).all()
        assert all((a == b).all() for a, b in zip(other.history, task.history))
    assert (task.kind, popularity.kind, retrieved.kind) == ("uniform", "popularity", "retrieved")
    assert retrieved.provenance["first_stage"] == "bpr" and retrieved.provenance["first_stage_settings"]["epochs"] == 20
    assert task.first_stage_scores is None and retrieved.subset([3, 4]).first_stage_scores.shape == (2, 20)
    assert not (popularity.candidates == task.candidates).all()


def test_popularity_matched_negatives_take_pops_advantage_away(loo, task, popularity):
    pop = get_model("pop").fit(loo)
    uniform, matched = evaluate_llmrank(pop, task), evaluate_llmrank(pop, popularity)
    chance = random_expectation()["ndcg@10"]
    assert uniform["ndcg@10"] > 0.45  # uniform negatives: popularity alone ranks well
    _, low, high = intervals(matched, ("ndcg@10",))["ndcg@10"]
    assert low < chance < high and matched["ndcg@10"] < 0.30  # matched: Pop about chance
    # the negatives sit in the target's popularity bin (by training counts)
    counts = loo.train.item_popularity()
    spread = np.abs(np.log1p(counts[popularity.candidates]) - np.log1p(counts[popularity.targets])[:, None])
    assert np.median(spread) < 0.25 < np.median(np.abs(np.log1p(counts[task.candidates])
                                                       - np.log1p(counts[task.targets])[:, None]))


def test_retrieved_negatives_are_the_first_stages_top_unseen_items(loo, retrieved, first_stage):
    from genrec_lib.evaluation.ranking import recommend

    # the first stage's own ranking of the candidates, from the kept scores, is what evaluating it gives
    kept = candidate_metrics(retrieved.first_stage_scores, retrieved)
    direct = evaluate_llmrank(first_stage, retrieved)
    assert (kept.per_user["ndcg@10"] == direct.per_user["ndcg@10"]).all()
    # the negatives are its best items among those the user never rated (up to ties)
    interacted = loo.dataset.csr()[retrieved.users].toarray() > 0
    top = recommend(first_stage, loo, "test", k=80, users=retrieved.users)
    for row in range(0, 200, 17):
        allowed = [i for i in top[row] if not interacted[row, i] and i != retrieved.targets[row]][:19]
        negatives = set(retrieved.candidates[row]) - {retrieved.targets[row]}
        assert negatives == set(allowed)


def test_candidate_kind_errors(loo):
    with pytest.raises(ValueError, match="unknown candidates"):
        make_llmrank_task(loo, candidates="hard")
    with pytest.raises(ValueError, match="first_stage is needed"):
        make_llmrank_task(loo, candidates="retrieved")
    with pytest.raises(ValueError, match="first_stage is needed"):
        make_llmrank_task(loo, candidates="uniform", first_stage="bpr")
