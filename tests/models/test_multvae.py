"""Mult-VAE / Mult-DAE: shapes, learning, determinism, masking, errors, CLI path."""

import numpy as np
import pytest

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.multvae import MultDAE, MultVAE

NAMES = ("multvae", "multdae")
FAST = dict(hidden=32, latent=8, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_split):  # two taste clusters, 60 users x 40 items (tests/conftest.py)
    return tiny_split


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_scores_have_shape(name, split):
    assert name in MODELS
    model = get_model(name, **FAST).fit(split)
    rows, batch = next(user_batches(split, "test", np.arange(7), 7, None, model.device))
    assert model.score(batch).shape == (7, split.n_items)


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases(name, split):
    model = get_model(name, **{**FAST, "epochs": 40, "patience": 100, "learning_rate": 3e-3})
    model.fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:3])


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name, split):
    a = evaluate(get_model(name, **FAST, seed=7).fit(split), split, "test").metrics
    b = evaluate(get_model(name, **FAST, seed=7).fit(split), split, "test").metrics
    assert a == b


def test_kl_weight_anneals_to_the_cap():
    model = MultVAE(beta_cap=0.3, anneal_steps=10)
    model.update_count = 5
    assert model.beta() == pytest.approx(0.15)
    model.update_count = 100
    assert model.beta() == pytest.approx(0.3)
    assert MultDAE().beta() == 0.0


def test_seen_items_are_masked(split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(get_model("multvae", **FAST).fit(split), split)


@pytest.mark.parametrize("kwargs,param", [({"beta_cap": -0.1}, "beta_cap"), ({"dropout": 1.0}, "dropout"),
                                          ({"latent": 0}, "latent"), ({"anneal_steps": -1}, "anneal_steps"),
                                          ({"learning_rate": 0}, "learning_rate")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        MultVAE(**kwargs)


def test_dae_rejects_bad_dropout():
    with pytest.raises(ValueError, match="dropout"):
        MultDAE(dropout=-0.5)


@pytest.mark.parametrize("name", NAMES)
def test_cli_bench_path(name, split, bench_record):
    bench_record(name, split, "random", **FAST)
