"""FlowCF: prior, discrete path, few-step inference, learning, determinism, masking, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.flowcf import FlowCF

FAST = dict(hidden=32, emb_dim=4, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_split):  # two taste clusters, 60 users x 40 items (tests/conftest.py)
    return tiny_split


def test_registered_and_scores_have_shape(split):
    assert "flowcf" in MODELS
    model = get_model("flowcf", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, None, model.device))
    assert model.score(batch).shape == (7, split.n_items)


def test_behaviour_guided_prior_matches_item_frequencies(split):
    model = FlowCF(**FAST)
    model.build(split)
    f = torch.from_numpy(split.train.csr().toarray()).mean(0)
    assert torch.allclose(model.f, f)
    draws = model.prior_sample(4000, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(draws.mean(0), f, atol=0.03)


def test_discrete_path_is_binary_and_interpolates(split):
    model = FlowCF(**FAST)
    model.build(split)
    gen = torch.Generator().manual_seed(0)
    X_1 = (torch.rand(500, split.n_items, generator=gen) < 0.3).float()
    X_0 = 1 - X_1  # disagree everywhere, so the share taken from X_1 is visible
    for t, share in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        X_t = model.interpolate(X_0, X_1, torch.full((500,), t), gen)
        assert set(X_t.unique().tolist()) <= {0.0, 1.0}
        assert (X_t == X_1).float().mean().item() == pytest.approx(share, abs=0.02)


def test_inference_takes_sampling_steps_passes_and_keeps_the_history(split, monkeypatch):
    model = get_model("flowcf", **FAST, n_steps=6, sampling_steps=3).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(9), 9, None, model.device))
    calls = []
    original = model.predict_x1
    monkeypatch.setattr(model, "predict_x1", lambda X_t, t: calls.append(X_t.clone()) or original(X_t, t))
    model.score(batch)
    assert len(calls) == 3
    for X_t in calls:  # observed items are never removed on the way
        assert torch.all(X_t >= batch.history)
    steps = list(model.flow(batch.history, 0))
    assert [round(float(t), 4) for t, _, _ in steps] == [round(n / 6, 4) for n in range(6)]


def test_learns_the_taste_clusters(split):
    model = get_model("flowcf", **{**FAST, "epochs": 60, "patience": 100, "eval_every": 10,
                                   "learning_rate": 3e-3, "dropout": 0.2}).fit(split)
    flow = evaluate(model, split, "test", ks=(10,))["ndcg@10"]
    pop = evaluate(get_model("pop").fit(split), split, "test", ks=(10,))["ndcg@10"]
    assert pop + 0.05 < flow < 0.99, (flow, pop)


def test_samples_are_binary_vectors(split):
    model = get_model("flowcf", **FAST).fit(split)
    X = model.sample(11, torch.Generator().manual_seed(0))
    assert X.shape == (11, split.n_items) and set(X.unique().tolist()) <= {0.0, 1.0}


def test_deterministic_under_seed(split):
    a = evaluate(get_model("flowcf", **FAST, seed=3).fit(split), split, "test").metrics
    b = evaluate(get_model("flowcf", **FAST, seed=3).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked(split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(get_model("flowcf", **FAST).fit(split), split)


@pytest.mark.parametrize("kwargs,param", [({"n_steps": 0}, "n_steps"), ({"sampling_steps": 0}, "sampling_steps"),
                                          ({"sampling_steps": 12, "n_steps": 9}, "sampling_steps"),
                                          ({"dropout": 1.0}, "dropout"), ({"hidden": -3}, "hidden"),
                                          ({"weight_decay": -1.0}, "weight_decay")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        FlowCF(**kwargs)


def test_cli_bench_path(split, bench_record):
    bench_record("flowcf", split, "random", **FAST)
