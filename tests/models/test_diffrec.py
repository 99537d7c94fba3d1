"""DiffRec: schedule, shapes, learning, determinism, masking, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import get_model
from genrec_lib.models.diffrec import DiffRec

FAST = dict(hidden=32, emb_dim=4, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_split):  # two taste clusters, 60 users x 40 items (tests/conftest.py)
    return tiny_split


def test_schedule_is_short_and_keeps_the_signal(split):
    model = DiffRec(steps=5, noise_scale=0.1, noise_min=0.01, noise_max=0.1)
    model.build(split)
    one_minus_abar = 1 - model.abar
    assert torch.allclose(one_minus_abar, torch.linspace(1e-3, 1e-2, 5), atol=1e-6)
    assert model.c0[0] == pytest.approx(1.0) and model.ct[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("sampling_steps", [0, 3])
def test_scores_have_shape(split, sampling_steps):
    model = get_model("diffrec", **FAST, sampling_steps=sampling_steps).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, None, model.device))
    assert model.score(batch).shape == (7, split.n_items)
    assert len(list(model.reverse(batch.history))) == model.steps


def test_loss_decreases(split):
    model = get_model("diffrec", **{**FAST, "epochs": 40, "patience": 100, "learning_rate": 3e-3}).fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])


def test_deterministic_under_seed(split):
    a = evaluate(get_model("diffrec", **FAST, sampling_steps=2, seed=3).fit(split), split, "test").metrics
    b = evaluate(get_model("diffrec", **FAST, sampling_steps=2, seed=3).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked(split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(get_model("diffrec", **FAST).fit(split), split)


@pytest.mark.parametrize("kwargs,param", [({"steps": 0}, "steps"), ({"noise_scale": -1.0}, "noise_scale"),
                                          ({"noise_min": 0.01, "noise_max": 0.001}, "noise_min"),
                                          ({"sampling_steps": 9, "steps": 5}, "sampling_steps"),
                                          ({"sampling_steps": -1}, "sampling_steps"), ({"dropout": 1.0}, "dropout"),
                                          ({"noise_scale": 100.0, "noise_max": 0.5}, "noise_scale")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        DiffRec(**kwargs)


def test_cli_bench_path(split, bench_record):
    bench_record("diffrec", split, "random", **FAST)
