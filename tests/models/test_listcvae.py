"""List-CVAE: constructed slates, shapes, conditioning, generation without repeats, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.listcvae import ListCVAE

FAST = dict(slate_size=4, dim=16, latent=4, hidden=32, batch_size=16, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_split):
    return tiny_split


def test_constructed_slates_hold_targets_or_unrated_items(split):
    model = ListCVAE(**FAST)
    model.build(split)
    X = model.X[:20]
    history, s, r = model.make_slates(X, torch.Generator().manual_seed(0))
    assert s.shape == r.shape == (20, 4)
    assert torch.all(history <= X)  # the condition is a part of the user's items
    rated = torch.gather(X, 1, s)
    in_history = torch.gather(history, 1, s)
    assert torch.all(r == rated * (1 - in_history))  # r = 1 exactly for held-back items of the user
    assert torch.all(in_history == 0)  # a slate never repeats the conditioning items
    for row in s:  # no repeats within a slate
        assert len(set(row.tolist())) == 4


def test_generated_slates_have_no_repeats_and_avoid_excluded_items(split):
    model = get_model("listcvae", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(10), 10, None, model.device))
    slates = model.generate(batch.history, exclude=batch.seen)
    assert slates.shape == (10, 4)
    assert not torch.gather(batch.seen, 1, slates).any()
    for row in slates:
        assert len(set(row.tolist())) == 4
    # The response is an input: a different ask gives different logits.
    ones = model.slate_logits(batch.history)
    zeros = model.slate_logits(batch.history, torch.zeros(10, 4))
    assert not torch.allclose(ones, zeros)


def test_learns_better_than_popularity(split):
    model = get_model("listcvae", **{**FAST, "epochs": 60, "patience": 100, "eval_every": 10,
                                     "learning_rate": 3e-3}).fit(split)
    ndcg = evaluate(model, split, "test", ks=(10,))["ndcg@10"]
    pop = evaluate(get_model("pop").fit(split), split, "test", ks=(10,))["ndcg@10"]
    assert pop < ndcg < 0.99, (ndcg, pop)


def test_registered_scores_and_masking(split, assert_no_seen_item_recommended):
    assert "listcvae" in MODELS
    model = get_model("listcvae", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, None, model.device))
    assert model.score(batch).shape == (7, split.n_items)
    assert_no_seen_item_recommended(model, split)


@pytest.mark.parametrize("kwargs,param", [({"slate_size": 0}, "slate_size"), ({"positive_share": 1.0}, "positive_share"),
                                          ({"condition_share": 0.0}, "condition_share"), ({"beta": -1.0}, "beta")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        ListCVAE(**kwargs)


def test_slate_larger_than_catalogue_raises(split):
    with pytest.raises(ValueError, match="slate_size"):
        ListCVAE(slate_size=500).build(split)


def test_cli_bench_path(split, bench_record):
    bench_record("listcvae", split, "random", **FAST)
