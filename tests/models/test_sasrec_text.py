"""SASRec with a text item table: frozen vs trained vectors, cold items, whitening, errors."""

import numpy as np
import pytest
import torch

from genrec_lib.data.splits import hold_out_items
from genrec_lib.evaluation.ranking import evaluate
from genrec_lib.models import MODELS, get_model
from genrec_lib.models.sasrec_text import SASRecText, whiten

FAST = dict(dim=16, n_layers=1, n_heads=2, max_seq_len=8, batch_size=32, epochs=3, eval_every=1, patience=5)


def cycle_vectors(split, noise=0.0, seed=0):
    """Text vectors that say where an item sits in its half's cycle (tests/conftest.py's tiny data):
    the half, and the angle of its position. What follows an item is then a function of its text."""
    n = split.n_items
    ids = np.asarray(split.dataset.item_ids) - 1  # raw ids 1..40 -> 0..39
    half, pos = ids // (n // 2), ids % (n // 2)
    angle = 2 * np.pi * pos / (n // 2)
    x = np.stack([half, 1 - half, np.cos(angle), np.sin(angle), np.cos(2 * angle), np.sin(2 * angle)], 1)
    x = x + noise * np.random.default_rng(seed).normal(size=x.shape)
    return torch.tensor(x, dtype=torch.float32)


def test_registered_and_whitening():
    assert MODELS["sasrec-text"] is SASRecText
    x = torch.randn(200, 30) @ torch.randn(30, 30) * 5 + 3  # correlated, off-centre
    z = whiten(x, 10)
    assert z.shape == (200, 10)
    cov = (z.T @ z) / 199 * 10  # each kept direction: unit variance before the 1/sqrt(k) scaling
    assert torch.allclose(cov, torch.eye(10), atol=1e-4) and torch.allclose(z.mean(0), torch.zeros(10), atol=1e-5)
    assert whiten(torch.randn(50, 3) @ torch.randn(3, 8), 64).shape == (50, 3)  # never more than the rank


def test_frozen_table_stays_and_initialised_table_trains(tiny_loo):
    x = cycle_vectors(tiny_loo, noise=0.1)
    frozen = get_model("sasrec-text", item_vectors=x, freeze_items=True, **FAST)
    frozen.build(tiny_loo)
    start = frozen.x_tilde.clone()
    frozen = get_model("sasrec-text", item_vectors=x, freeze_items=True, **FAST).fit(tiny_loo)
    assert "x_tilde" in dict(frozen.named_buffers()) and "x_tilde" not in dict(frozen.named_parameters())
    assert torch.equal(frozen.x_tilde, start)
    tuned = get_model("sasrec-text", item_vectors=x, freeze_items=False, **FAST).fit(tiny_loo)
    assert "x_tilde" in dict(tuned.named_parameters())
    assert not torch.allclose(tuned.x_tilde, start)
    M = tuned.item_table()
    assert M.shape == (tiny_loo.n_items + 1, 16) and torch.equal(M[-1], torch.zeros(16))  # padding row


def test_text_table_ranks_cold_items_an_id_table_cannot(tiny_loo):
    cold, is_cold = hold_out_items(tiny_loo, share=0.25, seed=3)
    users = np.sort(tiny_loo.test.user[is_cold[tiny_loo.test.item]])
    assert len(users) >= 8
    long = {**FAST, "epochs": 40, "patience": 100, "eval_every": 20, "learning_rate": 1e-2}
    text = get_model("sasrec-text", item_vectors=cycle_vectors(tiny_loo), **long).fit(cold)
    ids = get_model("sasrec", **long).fit(cold)
    hr_text = evaluate(text, cold, "test", ks=(5,), users=users)["hit@5"]
    hr_id = evaluate(ids, cold, "test", ks=(5,), users=users)["hit@5"]
    # the cold target follows the user's last item in its cycle: text places it, an ID table never saw it
    assert hr_text >= 0.6 and hr_id <= 0.25, (hr_text, hr_id)


def test_encoder_path_and_determinism(tiny_loo):
    a = evaluate(get_model("sasrec-text", encoder="minilm", **FAST, seed=4).fit(tiny_loo), tiny_loo, "test").metrics
    b = evaluate(get_model("sasrec-text", encoder="minilm", **FAST, seed=4).fit(tiny_loo), tiny_loo, "test").metrics
    assert a == b


def test_bad_arguments_give_one_line_errors(tiny_loo):
    for kwargs, message in [(dict(encoder="bert"), "encoder must be one of"), (dict(freeze_items="yes"), "freeze_items"),
                            (dict(n_components=0), "n_components must be > 0"), (dict(layer=-1), "layer must be >= 0"),
                            (dict(item_vectors=torch.zeros(5)), "2-d tensor"),
                            (dict(item_vectors=torch.full((40, 3), float("nan"))), "NaN")]:
        with pytest.raises(ValueError, match=message) as error:
            get_model("sasrec-text", **kwargs)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="has 7 rows but the dataset has 40 items"):
        get_model("sasrec-text", item_vectors=torch.randn(7, 4), **FAST).fit(tiny_loo)
