"""GRU4Rec: shapes, learning, determinism, masking of seen items, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.gru4rec import GRU4Rec
from genrec_lib.models.sasrec import beam_search

FAST = dict(dim=16, hidden=16, max_seq_len=8, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_loo):  # two clusters, items in a fixed cyclic order (tests/conftest.py)
    return tiny_loo


def test_registered_and_scores_have_shape(split):
    assert "gru4rec" in MODELS
    model = get_model("gru4rec", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, model.max_seq_len, model.device))
    scores = model.score(batch)
    assert scores.shape == (7, split.n_items) and torch.isfinite(scores).all()


def test_loss_decreases_and_sequence_is_learned(split):
    model = get_model("gru4rec", **{**FAST, "epochs": 40, "patience": 100, "learning_rate": 1e-2, "eval_every": 10})
    model.fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2])
    assert evaluate(model, split, "test", ks=(10,))["hit@10"] > 0.5


def test_deterministic_under_seed(split):
    a = evaluate(get_model("gru4rec", **FAST, seed=7).fit(split), split, "test").metrics
    b = evaluate(get_model("gru4rec", **FAST, seed=7).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked_and_beam_search_works(split, assert_no_seen_item_recommended):
    model = get_model("gru4rec", **FAST).fit(split)
    assert_no_seen_item_recommended(model, split)
    users = np.arange(split.n_users)
    _, batch = next(user_batches(split, "test", users, len(users), model.max_seq_len, model.device))
    items, logp = beam_search(model, batch.sequences[:4], 2, beam_width=3)
    assert items.shape == (4, 3, 2) and torch.isfinite(logp).all()


@pytest.mark.parametrize("kwargs,param", [({"dim": 0}, "dim"), ({"hidden": -1}, "hidden"), ({"dropout": -0.1}, "dropout"),
                                          ({"max_seq_len": 0}, "max_seq_len"), ({"learning_rate": 0}, "learning_rate")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        GRU4Rec(**kwargs)


def test_cli_bench_path(split, bench_record):
    record = bench_record("gru4rec", split, "loo", **FAST)
    assert record["seconds_per_epoch"] > 0
