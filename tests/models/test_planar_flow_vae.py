"""Planar-flow Mult-VAE: exact log-determinants, invertibility, learning, masking, errors, CLI path."""

import numpy as np
import pytest
import torch

from genrec_lib.evaluation.ranking import evaluate, user_batches
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.planar_flow_vae import PlanarFlowVAE, planar_flow

FAST = dict(hidden=32, latent=8, n_flows=2, batch_size=32, epochs=3, eval_every=1, patience=5)


@pytest.fixture
def split(tiny_split):
    return tiny_split


def test_log_determinant_matches_autograd_jacobian():
    gen = torch.Generator().manual_seed(0)
    d = 5
    z, u, w = (torch.randn(1, d, generator=gen, dtype=torch.float64) for _ in range(3))
    u = u * 3  # large enough that the invertibility projection of u is active
    b = torch.randn(1, generator=gen, dtype=torch.float64)
    _, log_det = planar_flow(z, u, w, b)
    J = torch.autograd.functional.jacobian(lambda x: planar_flow(x[None], u, w, b)[0][0], z[0])
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(J)[1].item(), abs=1e-6)


def test_projected_map_is_invertible_along_w():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, 4, generator=gen)
    u = -5 * w  # w.u << -1: not invertible unless projected
    b = torch.zeros(1)
    a = torch.linspace(-6, 6, 400)[:, None] * w / w.pow(2).sum()  # points along w
    out, log_det = planar_flow(a, u.expand(400, -1), w.expand(400, -1), b.expand(400))
    along = (out * w).sum(1)
    assert torch.all(along[1:] > along[:-1])  # strictly increasing: one-to-one
    assert torch.isfinite(log_det).all()


def test_registered_and_scores_have_shape(split):
    assert "planarvae" in MODELS
    model = get_model("planarvae", **FAST).fit(split)
    _, batch = next(user_batches(split, "test", np.arange(7), 7, None, model.device))
    assert model.score(batch).shape == (7, split.n_items)


def test_loss_decreases_and_learns(split):
    model = get_model("planarvae", **{**FAST, "epochs": 40, "patience": 100, "learning_rate": 3e-3}).fit(split)
    losses = [e["loss"] for e in model.history_.epochs]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:3])
    pop = evaluate(get_model("pop").fit(split), split, "test", ks=(10,))["ndcg@10"]
    assert pop < evaluate(model, split, "test", ks=(10,))["ndcg@10"] < 0.99


def test_deterministic_under_seed(split):
    a = evaluate(get_model("planarvae", **FAST, seed=7).fit(split), split, "test").metrics
    b = evaluate(get_model("planarvae", **FAST, seed=7).fit(split), split, "test").metrics
    assert a == b


def test_seen_items_are_masked(split, assert_no_seen_item_recommended):
    assert_no_seen_item_recommended(get_model("planarvae", **FAST).fit(split), split)


@pytest.mark.parametrize("kwargs,param", [({"n_flows": 0}, "n_flows"), ({"latent": 0}, "latent"),
                                          ({"dropout": 1.0}, "dropout")])
def test_bad_hyperparameters_raise(kwargs, param):
    with pytest.raises(ValueError, match=param):
        PlanarFlowVAE(**kwargs)


def test_cli_bench_path(split, bench_record):
    bench_record("planarvae", split, "random", **FAST)
