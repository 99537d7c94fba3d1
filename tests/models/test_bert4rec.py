"""BERT4Rec: masking, shapes, learning, determinism, masking of seen items, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.bert4rec import BERT4Rec
from genrec_lib.models.sasrec import sample_continuations

FAST = dict(dim=16, n_layers=1, n_heads=2, max_seq_len=8, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_loo):  # two clusters, items in a fixed cyclic order (tests/conftest.py)
    return tiny_loo


def test_training_batches_mask_real_items_only(split):
    model = BERT4Rec(**FAST, mask_prob=0.3)
    model.build(split)
    for batch in model.training_batches(split, torch.Generator().manual_seed(0)):
        S, y, masked = batch["S"], batch["y"], batch["masked"]
        assert (S[masked] == model.mask).all() and (S[~masked] == y[~masked]).all()
        assert (y[masked] < split.n_items).all()  # never asked to predict padding
        assert masked.any(1).all()  # every window teaches something


def test_registered_and_scores_have_shape(split):
    assert "bert4rec" in MODELS
    model = get_model("bert4rec", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, model.max_seq_len, model.device))
    scores = model.score(batch)
    assert scores.shape == (7, split.n_items) and torch.isfinite(scores).all()
    assert model.E.num_embeddings == split.n_items + 2  # items + padding + [mask]
    _, maps = model.encode(batch.sequences, return_attention=True)
    assert (maps[0].triu(1) > 0).any()  # bidirectional: later positions are visible


def test_loss_decreases_and_sequence_is_learned(split):
    model = get_model("bert4rec", **{**FAST, "epochs": 60, "patience": 100, "learning_rate": 1e-2, "eval_every": 20})
    model.fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])
    assert evaluate(model, split, "test", ks=(10,))["hit@10"] > 0.5


def test_deterministic_under_seed(split):
    a = evaluate(get_model("bert4rec", **FAST, seed=7).fit(split), split, "test").metrics
    b = evaluate(get_model("bert4rec", **FAST, seed=7).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked_and_generation_works(split, assert_no_seen_item_recommended):
    model = get_model("bert4rec", **FAST).fit(split)
    assert_no_seen_item_recommended(model, split)
    users = np.arange(split.n_users)
    _, batch = next(user_batches(split, "test", users, len(users), model.max_seq_len, model.device))
    sampled = sample_continuations(model, batch.sequences[:4], 3, top_k=5, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (4, 3)


@pytest.mark.parametrize("kwargs,param", [({"dim": 0}, "dim"), ({"mask_prob": 0}, "mask_prob"), ({"mask_prob": 1.0}, "mask_prob"),
                                          ({"last_mask_prob": -0.1}, "last_mask_prob"), ({"dropout": -1}, "dropout"),
                                          ({"epochs": 0}, "epochs"), ({"dim": 10, "n_heads": 3}, "n_heads")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        BERT4Rec(**kwargs)


def test_cli_bench_path(split, bench_record):
    record = bench_record("bert4rec", split, "loo", **FAST)
    assert record["seconds_per_epoch"] > 0
