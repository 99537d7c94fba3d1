"""CFGAN: shapes, both players learn, masking schemes, determinism, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import get_model
from genrec_lib.models.cfgan import CFGAN

FAST = dict(g_hidden=32, d_hidden=16, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_split):  # two taste clusters, 60 users x 40 items (tests/conftest.py)
    return tiny_split


def test_scores_have_shape_and_lie_in_unit_interval(split):
    model = get_model("cfgan", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, None, model.device))
    scores = model.score(batch)
    assert scores.shape == (7, split.n_items) and scores.min() >= 0 and scores.max() <= 1


def test_loss_decreases_and_both_players_are_traced(split):
    model = get_model("cfgan", **{**FAST, "epochs": 40, "patience": 100, "learning_rate": 3e-3, "alpha": 1.0})
    model.fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-5:]) < np.mean(losses[:3])
    assert {"loss_d", "loss_g", "zr", "d_real", "d_fake"} <= set(model.trace[-1])
    # Zero reconstruction pulls the generator's output on unpurchased items down.
    assert np.mean([t["zr"] for t in model.trace[-10:]]) < np.mean([t["zr"] for t in model.trace[:3]])


def test_one_backward_reaches_both_players(split):
    model = CFGAN(**FAST)
    model.build(split)
    rows = torch.arange(8)
    draws = torch.rand((2, 8, split.n_items))
    model.training_loss((rows, draws)).backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_deterministic_under_seed(split):
    a = evaluate(get_model("cfgan", **FAST, seed=5).fit(split), split, "test").metrics
    b = evaluate(get_model("cfgan", **FAST, seed=5).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked(split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(get_model("cfgan", **FAST).fit(split), split)


@pytest.mark.parametrize("kwargs,param", [({"alpha": -1.0}, "alpha"), ({"zr_ratio": 1.5}, "zr_ratio"),
                                          ({"pm_ratio": -0.1}, "pm_ratio"), ({"g_hidden": 0}, "g_hidden"),
                                          ({"condition_dropout": 1.0}, "condition_dropout"),
                                          ({"d_learning_rate": 0.0}, "d_learning_rate")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        CFGAN(**kwargs)


def test_cli_bench_path(split, bench_record):
    bench_record("cfgan", split, "random", **FAST)
