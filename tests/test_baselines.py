"""The four baselines land in two-sided bands on ML-100K (protocol random, seed 2020, test).

Floors catch a regression; ceilings catch a leak. Pop is deterministic up to random
tie-breaking (the independent evaluator's exact expectation is .1383), so its band is
narrow. The others' ceilings sit a few points above the best model measured on this
split (EASE, ~.33): a model that saw its test items would clear them by far.
"""

import pytest
import torch

from genrec_lib.data import make_split
from genrec_lib.evaluation import evaluate
from genrec_lib.models import get_model

BANDS = {"pop": (0.133, 0.143), "itemknn": (0.270, 0.36), "ease": (0.310, 0.37), "bpr": (0.275, 0.36)}


@pytest.fixture(scope="module")
def split(ml100k):
    return make_split(ml100k, "random", seed=2020)


@pytest.mark.parametrize("name", sorted(BANDS))
def test_baseline_band(split, name):
    model = get_model(name).fit(split)
    low, high = BANDS[name]
    assert low <= evaluate(model, split, "test", ks=(10,))["ndcg@10"] <= high


def test_ease_matches_its_closed_form(tiny_split):
    model = get_model("ease", l2=10.0).fit(tiny_split)
    X = torch.from_numpy(tiny_split.train.csr().toarray())
    B = model.B
    # Stationarity of the constrained ridge problem: off-diagonal gradient vanishes.
    grad = (X.T @ (X @ B - X) + 10.0 * B)
    off = ~torch.eye(B.shape[0], dtype=torch.bool)
    assert torch.allclose(grad[off], torch.zeros_like(grad[off]), atol=1e-3)
    assert torch.all(B.diagonal() == 0)


@pytest.mark.parametrize("name,kwargs", [("ease", {"l2": -1}), ("itemknn", {"k": 0}), ("bpr", {"dim": 0}), ("bpr", {"reg": -0.1})])
def test_bad_hyper_parameters_raise(name, kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        get_model(name, **kwargs)


def test_bpr_is_deterministic_under_a_seed(tiny_split):
    a = get_model("bpr", epochs=3, eval_every=1, seed=7).fit(tiny_split)
    b = get_model("bpr", epochs=3, eval_every=1, seed=7).fit(tiny_split)
    assert torch.equal(a.P.weight, b.P.weight)


def test_bpr_loss_decreases(tiny_split):
    model = get_model("bpr", epochs=30, eval_every=1, patience=100, learning_rate=1e-2, batch_size=64).fit(tiny_split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert losses[-1] < 0.7 * losses[0]
